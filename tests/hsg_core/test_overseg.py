import numpy as np
import pytest

from hsg_core.config import OversegConfig
from hsg_core.overseg import (
    OversegCache,
    UCMHierarchy,
    edge_map,
    gradient_edges,
    hed_edges,
    oversegment,
)
from hsg_core.overseg.hed import read_hed
from tests.conftest import make_shapes_image


def line_image():
    rng = np.random.default_rng(0)
    image = np.full((96, 128, 3), 150.0) + rng.normal(0, 3, (96, 128, 3))
    image[40:43, 10:118] = (20, 40, 200)  # a 3-px line
    return np.clip(image, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("method", ["gradient_ucm", "slic", "felzenszwalb"])
def test_contiguous_and_capped(method):
    image = make_shapes_image(np.random.default_rng(1), 70, 90)
    labels = oversegment(image, OversegConfig(method=method, max_regions=20))
    assert labels.shape == (70, 90) and labels.dtype == np.int32
    assert labels.max() + 1 <= 20 and np.array_equal(np.unique(labels), np.arange(labels.max() + 1))


def test_thin_line_survives_gradient_ucm():
    image = line_image()
    labels = oversegment(image, OversegConfig(method="gradient_ucm", max_regions=48))
    line = np.zeros(image.shape[:2], bool)
    line[40:43, 10:118] = True
    kept = 0
    for region in np.unique(labels[line]):
        mask = labels == region
        if (mask & line).sum() > 0.5 * mask.sum():
            kept += (mask & line).sum()
    assert kept >= 0.8 * line.sum()


def test_ucm_cuts_are_nested():
    hierarchy = UCMHierarchy.from_edges(
        gradient_edges(make_shapes_image(np.random.default_rng(2), 60, 80))
    )
    fine, coarse = hierarchy.cut(32), hierarchy.cut(8)
    assert coarse.max() + 1 <= 8 and fine.max() + 1 <= 32
    for region in np.unique(fine):
        assert np.unique(coarse[fine == region]).size == 1


def test_cache_round_trip_and_corruption(tmp_path):
    image = make_shapes_image(np.random.default_rng(3), 40, 50)
    cache = OversegCache(tmp_path)
    cfg = OversegConfig(method="slic", max_regions=10)
    first = oversegment(image, cfg, cache=cache)
    assert np.array_equal(cache.get(image, cfg), first)
    assert cache.get(image, OversegConfig(method="slic", max_regions=11)) is None
    cache.path(image, cfg).write_bytes(b"broken")
    assert cache.get(image, cfg) is None
    assert np.array_equal(oversegment(image, cfg, cache=cache), first)


def test_bad_input_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown oversegmentation method 'sam'"):
        oversegment(np.zeros((4, 4, 3), np.uint8), OversegConfig(method="sam"))
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        oversegment(np.zeros((4, 4), np.uint8), OversegConfig(method="slic"))
    bad = tmp_path / "w.h5"
    bad.write_bytes(b"nope")
    with pytest.raises(ValueError, match="w.h5: not HED weights"):
        read_hed(bad)


def test_hed_edges_follow_human_boundaries(bsds_root, fetched_weights):
    from scipy import io, ndimage

    from hsg_core.images import load_image

    fetched_weights("hed")
    image_path = sorted((bsds_root / "images" / "val").glob("*.jpg"))[0]
    gt = io.loadmat(bsds_root / "groundTruth" / "val" / f"{image_path.stem}.mat")["groundTruth"]
    boundary = np.zeros(gt[0, 0]["Boundaries"][0, 0].shape, bool)
    for i in range(gt.shape[1]):
        boundary |= gt[0, i]["Boundaries"][0, 0].astype(bool)
    near = ndimage.binary_dilation(boundary, iterations=2)
    edges = hed_edges(load_image(image_path))
    assert edges.shape == boundary.shape and 0 <= edges.min() and edges.max() <= 1
    assert edges[near].mean() > 3 * edges[~near].mean()
    labels = oversegment(load_image(image_path), OversegConfig(method="hed_ucm", max_regions=48))
    assert labels.max() + 1 <= 48


def two_halves_and_a_box() -> np.ndarray:
    """Edges [40, 40]: a weak line (0.2) splits the image in halves; a strong box (1.0) rings a 6x6 square."""
    edges = np.zeros((40, 40), np.float32)
    edges[:, 19] = 0.2
    edges[4, 4:12] = edges[11, 4:12] = edges[4:12, 4] = edges[4:12, 11] = 1.0
    return edges


@pytest.mark.parametrize("ordering", ["dynamics", "area", "volume"])
def test_every_ordering_gives_nested_capped_cuts(ordering):
    hierarchy = UCMHierarchy.from_edges(
        gradient_edges(make_shapes_image(np.random.default_rng(2), 60, 80)), ordering
    )
    fine, coarse = hierarchy.cut(24), hierarchy.cut(6)
    assert coarse.max() + 1 <= 6 and fine.max() + 1 <= 24
    assert all(np.unique(coarse[fine == r]).size == 1 for r in np.unique(fine))


def test_dynamics_keeps_the_strong_boundary_area_keeps_the_big_halves():
    by_dynamics = UCMHierarchy.from_edges(two_halves_and_a_box(), "dynamics").cut(2)
    by_area = UCMHierarchy.from_edges(two_halves_and_a_box(), "area").cut(2)
    inside, left, right = (7, 7), (30, 5), (30, 35)
    assert by_dynamics[inside] != by_dynamics[left] and by_dynamics[left] == by_dynamics[right]
    assert by_area[inside] == by_area[left] and by_area[left] != by_area[right]


def test_ordering_is_validated_and_part_of_the_cache_key(tmp_path):
    with pytest.raises(ValueError, match="unknown watershed ordering 'height'"):
        UCMHierarchy.from_edges(two_halves_and_a_box(), "height")
    with pytest.raises(ValueError, match="unknown overseg.ucm_ordering 'height'"):
        oversegment(
            np.zeros((8, 8, 3), np.uint8),
            OversegConfig(method="gradient_ucm", ucm_ordering="height"),
        )
    image = make_shapes_image(np.random.default_rng(3), 40, 50)
    cache = OversegCache(tmp_path)
    oversegment(image, OversegConfig(method="gradient_ucm", max_regions=10), cache=cache)
    assert (
        cache.get(image, OversegConfig(method="gradient_ucm", max_regions=10, ucm_ordering="area"))
        is None
    )


def test_edge_map_cache_round_trip_keyed_by_method_only(tmp_path):
    image = make_shapes_image(np.random.default_rng(8), 30, 40)
    cfg = OversegConfig(method="gradient_ucm", max_regions=12)
    cache = OversegCache(tmp_path)
    fresh = edge_map(image, cfg)
    cached = edge_map(image, cfg, cache=cache)
    assert fresh.dtype == np.float32 and np.array_equal(fresh, cached)  # float16-rounded either way
    assert np.array_equal(fresh, fresh.astype(np.float16).astype(np.float32))
    assert np.array_equal(
        cache.get_edges(image, OversegConfig(method="gradient_ucm", max_regions=99)), fresh
    )
    assert cache.get_edges(image, OversegConfig(method="hed_ucm")) is None  # another edge detector
    cache.path(image, cfg, "edges").write_bytes(b"broken")
    assert cache.get_edges(image, cfg) is None
    assert np.array_equal(edge_map(image, cfg, cache=cache), fresh)
    with pytest.raises(ValueError, match="'slic' has no edge map"):
        edge_map(image, OversegConfig(method="slic"))


def cache_bytes(root) -> int:
    """Bytes of every cache entry under `root`."""
    return sum(p.stat().st_size for p in root.rglob("*.npy"))


def entry_bytes(labels: np.ndarray) -> int:
    import io

    buffer = io.BytesIO()
    np.save(buffer, labels, allow_pickle=False)
    return len(buffer.getvalue())


def test_cache_stays_under_its_cap_and_keeps_the_most_recently_used(tmp_path):
    """40 entries into a cache capped at 10: it never holds more than its cap, the entry read after every
    write survives, and what is evicted was used before everything kept (least recently used first)."""
    rng = np.random.default_rng(0)
    cfg = OversegConfig(method="slic", max_regions=10)
    images = [rng.integers(0, 255, (16, 16, 3), dtype=np.uint8) for _ in range(40)]
    labels = np.arange(256, dtype=np.int32).reshape(16, 16)
    cache = OversegCache(tmp_path, max_bytes=10 * entry_bytes(labels))
    for image in images:
        cache.put(image, cfg, labels)
        assert np.array_equal(cache.get(images[0], cfg), labels)  # image 0 stays in use
        assert cache_bytes(tmp_path) <= cache.max_bytes
    present = [cache.path(image, cfg).is_file() for image in images]
    kept = [i for i in range(1, len(images)) if present[i]]
    assert present[0] and 7 <= len(kept) <= 9
    assert kept == list(
        range(len(images) - len(kept), len(images))
    )  # the most recent writes, in one run
    edges = np.zeros((16, 16), np.float32)
    for image in images:  # edge maps share the cap
        cache.put_edges(image, cfg, edges)
        assert cache_bytes(tmp_path) <= cache.max_bytes


def test_cache_cap_comes_from_the_environment(tmp_path, monkeypatch):
    from hsg_core.config import load_config
    from hsg_core.model import HSG
    from hsg_core.overseg.cache import CACHE_MB_ENV, DEFAULT_CACHE_MB
    from hsg_core.predictor import HSGPredictor

    monkeypatch.delenv(CACHE_MB_ENV, raising=False)
    assert OversegCache(tmp_path).max_bytes == DEFAULT_CACHE_MB << 20 == 2 << 30
    monkeypatch.setenv(CACHE_MB_ENV, "1.5")
    assert OversegCache(tmp_path).max_bytes == 3 << 19
    monkeypatch.setenv("HSG_CACHE", str(tmp_path))
    predictor = HSGPredictor(HSG(load_config("tiny")))  # the app's and `hsg`'s cache
    assert predictor.cache.root == tmp_path / "overseg" and predictor.cache.max_bytes == 3 << 19
    for bad in ("lots", "0", "-1", "nan", "inf"):
        monkeypatch.setenv(CACHE_MB_ENV, bad)
        with pytest.raises(
            ValueError, match=f"{CACHE_MB_ENV}='{bad}': expected a positive number of megabytes"
        ):
            OversegCache(tmp_path)


def _share_cache(root: str, cap: int, seed: int, rounds: int) -> None:
    """One of several processes writing to and reading from one small cache; exits 1 on any error."""
    import os

    try:
        rng = np.random.default_rng(seed)
        cfg = OversegConfig(method="slic", max_regions=10)
        cache = OversegCache(root, max_bytes=cap)
        seen = []
        for _ in range(rounds):
            image = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
            labels = rng.integers(0, 9, (16, 16), dtype=np.int32)
            cache.put(image, cfg, labels)
            seen.append((image, labels))
            for old_image, old_labels in seen[-5:]:
                got = cache.get(old_image, cfg)
                assert got is None or np.array_equal(got, old_labels)
    except BaseException:  # noqa: BLE001 - reported by the exit code
        import traceback

        traceback.print_exc()
        os._exit(1)
    os._exit(0)


def test_processes_sharing_a_cache_evict_each_others_entries_without_errors(
    tmp_path, monkeypatch, caplog
):
    """Three processes with one capped cache: none fails when another evicts an entry it is about to read or
    evict, and the folder ends within the cap plus what the others wrote since their last scan (10% each)."""
    import multiprocessing
    import os

    cap = 30 * entry_bytes(np.zeros((16, 16), np.int32))
    context = multiprocessing.get_context("fork")
    workers = [
        context.Process(target=_share_cache, args=(str(tmp_path), cap, seed, 150))
        for seed in range(3)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert [w.exitcode for w in workers] == [0, 0, 0]
    assert cache_bytes(tmp_path) <= cap * 1.2 + entry_bytes(np.zeros((16, 16), np.int32))

    # the two races, made certain: an entry vanishes between the check and the read, and during an eviction
    cfg = OversegConfig(method="slic", max_regions=10)
    cache = OversegCache(tmp_path / "one", max_bytes=cap)
    image, labels = np.zeros((16, 16, 3), np.uint8), np.zeros((16, 16), np.int32)
    cache.put(image, cfg, labels)
    real_load = np.load

    def load_after_eviction(path, **kwargs):
        os.unlink(path)
        return real_load(path, **kwargs)

    monkeypatch.setattr(np, "load", load_after_eviction)
    with caplog.at_level("WARNING"):
        assert cache.get(image, cfg) is None
    assert not caplog.records  # a miss, not a damaged entry
    monkeypatch.setattr(np, "load", real_load)
    gone = str(tmp_path / "one" / "ab" / "gone.npy")
    monkeypatch.setattr(
        cache, "_entries", lambda: [(0, cap, gone), (1, 10, str(cache.path(image, cfg)))]
    )
    assert cache.evict() == 10


def test_ucm_floor_keeps_a_coarser_cut_on_a_simple_image_and_keeps_old_cache_keys(tmp_path):
    """The original's UCM threshold floor (issue 15): never cut finer than `ucm_floor`."""
    import dataclasses

    from hsg_core.config import ConfigError, OversegConfig
    from hsg_core.overseg import OversegCache
    from hsg_core.overseg.ucm import UCMHierarchy

    edges = np.zeros((40, 40))
    edges[:, 20] = 0.9  # one strong boundary
    edges[10, :20] = 0.1  # a faint one
    hierarchy = UCMHierarchy.from_edges(edges)
    assert len(np.unique(hierarchy.cut(48))) == 3  # every boundary kept
    assert len(np.unique(hierarchy.cut(48, floor=0.25))) == 2  # the faint one merged
    assert len(np.unique(hierarchy.cut(1, floor=0.25))) == 1  # the count still caps
    cache = OversegCache(tmp_path)
    image = np.zeros((8, 8, 3), np.uint8)
    plain = OversegConfig()
    assert cache.key(image, plain) == cache.key(image, dataclasses.replace(plain, ucm_floor=0.0))
    assert cache.key(image, plain) != cache.key(image, dataclasses.replace(plain, ucm_floor=0.25))
    with pytest.raises(ConfigError, match="ucm_floor"):
        OversegConfig(ucm_floor=1.5)


def test_a_one_pixel_edge_map_is_refused_not_a_crash():
    """higra kills the process (SIGSEGV) on a 1x1 watershed: refused first, with the reason."""
    with pytest.raises(ValueError, match="a 1x1 map has no adjacent pixels"):
        UCMHierarchy.from_edges(np.zeros((1, 1), np.float32))
    two = UCMHierarchy.from_edges(np.array([[0.0, 1.0]], np.float32)).cut(4)
    assert two.shape == (1, 2) and two.max() <= 1
