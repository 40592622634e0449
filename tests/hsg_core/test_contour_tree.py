import higra as hg
import numpy as np
import pytest
from scipy import ndimage

from hsg_core.contour_tree import (
    COARSE_OFFSET,
    ContourTree,
    ContourTreeParams,
    deepest_pixels,
    semantic_linkage,
)


def stripes(height: int = 12, width: int = 18):
    """Three vertical stripes A | B | C, 6 px wide: contour 0.9 between A and B, 0.5 between B and C;
    the features change only between B and C."""
    edges = np.zeros((height, width), np.float32)
    semantic = np.zeros((height, width), np.float32)
    edges[:, 5:7] = 0.9
    edges[:, 11:13] = 0.5
    semantic[:, 11:13] = 1.0
    return edges, semantic


def same_region(labels, a, b) -> bool:
    return labels[a] == labels[b]


def test_semantics_decide_which_contour_goes_first():
    edges, semantic = stripes()
    a, b, c = (6, 1), (6, 9), (6, 16)  # (row, col) inside each stripe
    tree = ContourTree.build(
        edges, semantic, ContourTreeParams(switch_regions=3, region_semantic=0.0)
    )
    three = tree.cut_regions(3)
    assert np.unique(three).size == 3 and len({three[a], three[b], three[c]}) == 3
    two = tree.cut_regions(2)
    # the stronger contour (A|B) goes first: the features do not change across it
    assert same_region(two, a, b) and not same_region(two, b, c)
    assert np.unique(tree.cut_regions(1)).size == 1
    # without semantics the weaker contour goes first
    plain = ContourTree.build(
        edges,
        np.zeros_like(semantic),
        ContourTreeParams(
            fine_semantic=0.0, coarse_semantic=0.0, switch_regions=3, region_semantic=0.0
        ),
    )
    two = plain.cut_regions(2)
    assert same_region(two, b, c) and not same_region(two, a, b)


def random_maps(seed: int, shape=(24, 31)):
    """Smooth random contour and semantic maps in [0, 1], and random unit pixel features."""
    rng = np.random.default_rng(seed)

    def smooth(sigma):
        x = ndimage.gaussian_filter(rng.random(shape), sigma)
        return ((x - x.min()) / (x.max() - x.min())).astype(np.float32)

    edges, semantic = smooth(1.5), smooth(3.0)
    features = rng.normal(size=(shape[0] * shape[1], 5))
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    return edges, semantic, features


def region_sums(features):
    def sums(labels):
        out = np.zeros((labels.max() + 1, features.shape[1]))
        np.add.at(out, labels.ravel(), features)
        return out

    return sums


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cuts_are_nested_counted_and_deterministic(seed):
    edges, semantic, features = random_maps(seed)
    params = ContourTreeParams(switch_regions=12, region_semantic=0.5)
    tree = ContourTree.build(edges, semantic, params, region_sums(features))
    again = ContourTree.build(edges, semantic, params, region_sums(features))
    counts = (40, 20, 12, 6, 3, 1)
    cuts = [tree.cut_regions(n) for n in counts]
    for n, labels, other in zip(counts, cuts, [again.cut_regions(n) for n in counts]):
        assert labels.shape == edges.shape and labels.dtype == np.int32
        assert np.array_equal(labels, other)
        assert (
            np.array_equal(np.unique(labels), np.arange(labels.max() + 1)) and labels.max() + 1 <= n
        )
    for fine, coarse in zip(cuts, cuts[1:]):
        parent = np.full(fine.max() + 1, -1)
        parent[fine.ravel()] = coarse.ravel()
        assert np.array_equal(parent[fine], coarse)  # every fine region lies in one coarse region
    parents, altitudes = tree.tree.parents(), tree.altitudes
    assert (altitudes[parents] >= altitudes).all()


def test_fine_counts_are_cuts_of_the_fine_stage_and_coarse_altitudes_sit_above():
    edges, semantic, _ = random_maps(5)
    params = ContourTreeParams(fine_semantic=0.9, switch_regions=10, region_semantic=0.0)
    tree = ContourTree.build(edges, semantic, params)
    graph = hg.get_4_adjacency_graph(edges.shape)
    gated = edges * (1 - 0.9 + 0.9 * semantic)
    fine, alt = hg.watershed_hierarchy_by_dynamics(
        graph, hg.weight_graph(graph, gated.astype(np.float64), hg.WeightFunction.mean)
    )
    explorer = hg.HorizontalCutExplorer(fine, alt)
    for n in (10, 25):
        expected = explorer.horizontal_cut_from_num_regions(n, at_least=False).labelisation_leaves(
            fine
        )
        got = tree.cut_regions(n)
        # the same partition (ids may differ): a bijection between labels
        pairs = np.unique(np.stack([expected.ravel(), got.ravel()]), axis=1)
        assert pairs.shape[1] == np.unique(expected).size == np.unique(got).size
    top = tree.altitudes[tree.tree.num_leaves() :]
    assert top.max() >= COARSE_OFFSET and (tree.altitudes <= 1.0).any()
    assert (
        np.unique(tree.cut_altitude(COARSE_OFFSET - 1e-9)).size
        == np.unique(tree.cut_regions(10)).size
    )


def greedy_reference(
    edges: list[tuple[int, int]], base: list[float], features: np.ndarray, weight: float
):
    """Brute force: merge the two adjacent clusters with the lowest
    min(base between them) + weight * (1 - cos(sum of features)); returns the merge altitudes in order."""
    clusters = {i: {i} for i in range(features.shape[0])}
    altitudes = []
    while len(clusters) > 1:
        best = None
        for p in clusters:
            for q in clusters:
                if p >= q:
                    continue
                links = [
                    w
                    for (u, v), w in zip(edges, base)
                    if (u in clusters[p] and v in clusters[q])
                    or (u in clusters[q] and v in clusters[p])
                ]
                if not links:
                    continue
                fp, fq = features[list(clusters[p])].sum(0), features[list(clusters[q])].sum(0)
                cos = fp @ fq / np.linalg.norm(fp) / np.linalg.norm(fq)
                cost = min(links) + weight * (1 - cos)
                if best is None or cost < best[0] - 1e-12:
                    best = (cost, p, q)
        cost, p, q = best
        altitudes.append(cost)
        new = max(clusters) + 1
        clusters[new] = clusters.pop(p) | clusters.pop(q)
    return altitudes


def test_semantic_linkage_matches_brute_force_on_a_small_graph():
    rng = np.random.default_rng(3)
    edges = [
        (0, 1),
        (1, 2),
        (2, 3),
        (3, 4),
        (4, 5),
        (0, 3),
        (1, 4),
        (2, 5),
    ]  # a 2x3 grid of regions
    base = rng.random(len(edges))
    features = rng.normal(size=(6, 4))
    graph = hg.UndirectedGraph(6)
    graph.add_edges([e[0] for e in edges], [e[1] for e in edges])
    tree, altitudes = semantic_linkage(graph, base, features, 0.7)
    expected = np.maximum.accumulate(greedy_reference(edges, list(base), features, 0.7))
    assert np.allclose(np.sort(altitudes[6:]), np.sort(expected))
    plain, plain_alt = semantic_linkage(
        graph, base, None, 0.7
    )  # no features: single linkage on base
    assert np.allclose(
        np.sort(plain_alt[6:]), np.sort(greedy_reference(edges, list(base), np.ones((6, 1)), 0.0))
    )


def test_deepest_pixels():
    labels = np.array([0, 0, 1, 1, 1, 2])
    depth = np.array([0.5, 0.2, 0.9, 0.1, 0.1, 0.3])
    assert deepest_pixels(labels, depth, 3).tolist() == [1, 3, 5]


@pytest.mark.parametrize(
    "field, value",
    [
        ("fine_semantic", 1.5),
        ("coarse_semantic", -0.1),
        ("region_semantic", -1.0),
        ("switch_regions", 0),
        ("pixel_edges", "min"),
    ],
)
def test_bad_parameters_are_refused(field, value):
    edges, semantic = stripes()
    with pytest.raises(ValueError, match=f"contour.{field}"):
        ContourTree.build(edges, semantic, ContourTreeParams(**{field: value}))


def test_maps_of_different_shapes_are_refused():
    edges, semantic = stripes()
    with pytest.raises(ValueError, match="must be equal"):
        ContourTree.build(edges, semantic[:, :-1], ContourTreeParams())
    with pytest.raises(ValueError, match="max_regions"):
        ContourTree.build(edges, semantic, ContourTreeParams()).cut_regions(0)


@pytest.mark.parametrize("axis", [0, 1])
def test_a_flipped_image_gives_mirrored_regions(axis):
    edges, semantic, features = random_maps(7, shape=(20, 26))
    params = ContourTreeParams(switch_regions=10, region_semantic=0.5)
    assert (
        params.pixel_edges == "mean"
    )  # with "max", ties between the edges of a pixel break by order
    tree = ContourTree.build(edges, semantic, params, region_sums(features))
    flipped_features = np.flip(features.reshape(20, 26, -1), axis).reshape(20 * 26, -1)
    mirror = ContourTree.build(
        np.flip(edges, axis).copy(),
        np.flip(semantic, axis).copy(),
        params,
        region_sums(flipped_features),
    )
    for n in (30, 10, 4, 2):
        a, b = tree.cut_regions(n), np.flip(mirror.cut_regions(n), axis)
        pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
        assert (
            pairs.shape[1] == np.unique(a).size == np.unique(b).size
        )  # the same partition, mirrored


def test_a_one_pixel_image_is_refused_not_a_crash():
    one = np.zeros((1, 1), np.float32)
    with pytest.raises(ValueError, match="a 1x1 map has no adjacent pixels"):
        ContourTree.build(one, one, ContourTreeParams(switch_regions=3, region_semantic=0.0))
    two = np.array([[0.0, 1.0]], np.float32)
    tree = ContourTree.build(two, two, ContourTreeParams(switch_regions=3, region_semantic=0.0))
    assert tree.cut_regions(1).shape == (1, 2)
