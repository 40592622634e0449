"""Label-free retrieval quality: does a region find itself in an augmented copy of its image?

For every (original, copy) pair of a prepared work folder (`index.copies`), indexed together
with the rest of the folder as distractors, and for every level l:

- queries: the original's level-l regions covering at least `MIN_AREA_FRACTION` of the image
  and keeping at least `MIN_VISIBLE_FRACTION` of their pixels inside the copy;
- target of a query R: the one copy region of level l with the highest IoU with R's mask mapped
  into the copy's frame (`CopyTransform.warp_labels`); that IoU is reported (a low value means
  the copy was segmented differently, not that retrieval failed);
- hit@k: the target is among the k best hits of R's stored embedding searched at level l over
  the whole index minus the original image (`SegmentIndex.search_region`).

References reported beside it: the same search over every level, a colour-histogram embedding
ranked the same way (exactly, in numpy), and the recall of a random ranking (chance).
The label maps are painted from the masks stored in the index, so no model is needed here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .copies import CopyPair, CopyTransform, ImageLoader
from .errors import IndexFormatError
from .rle import decode_mask
from .store import Hit, SegmentIndex

LOG = logging.getLogger(__name__)

MIN_AREA_FRACTION = 0.005  # queries cover at least 0.5% of the original image
MIN_VISIBLE_FRACTION = 0.5  # ... and keep at least half of their pixels inside the copy
GOOD_IOU = 0.5  # reported: share of queries whose target overlaps the mapped mask this well
TOP_K = (1, 10)
HISTOGRAM_BINS = 4  # per RGB channel: a 64-bin joint colour histogram for the baseline
METHODS = ("hsg", "hsg_all_levels", "colour_histogram")


class RegionMaps:
    """Per-level label maps of indexed images, painted from the index's stored masks.

    Level 0 is painted from its masks; level l + 1 follows through the stored parents
    (``label_{l+1} = parent_l[label_l]``, the nesting every `Prediction` guarantees).
    """

    def __init__(self, index: SegmentIndex) -> None:
        self._frame = index.metadata
        self._rows = self._frame.groupby("image").indices

    def __contains__(self, image: str) -> bool:
        return image in self._rows

    def size(self, image: str) -> tuple[int, int]:
        """(H, W) of an indexed image."""
        row = self._frame.iloc[self._rows[image][0]]
        return int(row["height"]), int(row["width"])

    def label_maps(self, image: str) -> list[np.ndarray]:
        """Per level, finest first, the [H, W] int32 region ids of an indexed image."""
        rows = self._frame.iloc[self._rows[image]]
        label = np.full(self.size(image), -1, np.int32)
        finest = rows[rows["level"] == 0]
        for region, x0, y0, x1, y1, rle in zip(
            *(finest[c].to_numpy() for c in ("region", "x0", "y0", "x1", "y1", "rle"))
        ):
            label[y0:y1, x0:x1][decode_mask(rle, (y1 - y0, x1 - x0))] = region
        if (label < 0).any():
            raise IndexFormatError(f"{image}: its level-0 masks leave pixels uncovered")
        maps = [label]
        for level in range(1, int(rows["level"].max()) + 1):
            below = rows[rows["level"] == level - 1]
            parents = np.zeros(int(below["region"].max()) + 1, np.int32)
            parents[below["region"].to_numpy()] = below["parent"].to_numpy()
            maps.append(parents[maps[-1]])
        return maps


def copy_targets(
    original: np.ndarray, copy: np.ndarray, transform: CopyTransform
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Queries of one level of one pair and their targets.

    Args:
        original: [H, W] region ids of the original at some level.
        copy: [h, w] region ids of the copy at the same level.
        transform: how the copy was made from the original.

    Returns:
        (regions [Q] of the original kept as queries, their targets [Q] in the copy,
        the targets' IoU [Q] with the mapped masks).
    """
    warped = transform.warp_labels(original)
    if warped.shape != copy.shape:
        raise ValueError(f"copy is {copy.shape}, its transform makes {warped.shape}")
    n_orig, n_copy = int(original.max()) + 1, int(copy.max()) + 1
    area = np.bincount(original.ravel(), minlength=n_orig)
    visible = np.bincount(original[transform.inside_copy()], minlength=n_orig)
    pairs = warped.ravel().astype(np.int64) * n_copy + copy.ravel()
    inter = np.bincount(pairs, minlength=n_orig * n_copy).reshape(n_orig, n_copy)
    union = inter.sum(1, keepdims=True) + inter.sum(0, keepdims=True) - inter
    iou = inter / np.maximum(union, 1)
    target, target_iou = iou.argmax(1), iou.max(1)
    keep = (
        (area >= MIN_AREA_FRACTION * original.size)
        & (visible >= MIN_VISIBLE_FRACTION * np.maximum(area, 1))
        & (target_iou > 0)
    )
    regions = np.flatnonzero(keep)
    return regions, target[regions], target_iou[regions]


def colour_histograms(image: np.ndarray, label_map: np.ndarray) -> np.ndarray:
    """[N, B^3] float32 unit vectors: square roots of each region's joint RGB histogram.

    Their inner product is the Bhattacharyya coefficient of the two colour distributions.
    """
    bins = (image.astype(np.int64) * HISTOGRAM_BINS) // 256
    colour = (bins[..., 0] * HISTOGRAM_BINS + bins[..., 1]) * HISTOGRAM_BINS + bins[..., 2]
    dim, count = HISTOGRAM_BINS**3, int(label_map.max()) + 1
    hist = np.bincount((label_map.astype(np.int64) * dim + colour).ravel(), minlength=count * dim)
    hist = np.sqrt(hist.reshape(count, dim).astype(np.float32))
    return hist / np.maximum(np.linalg.norm(hist, axis=1, keepdims=True), 1e-12)


@dataclass
class ColourBaseline:
    """Colour-histogram vectors of every region of every indexed image, per level."""

    vectors: list[np.ndarray]  # per level [M, 64]
    image_codes: list[np.ndarray]  # per level [M] code of each row's image
    rows: list[dict[tuple[str, int], int]]  # per level (image, region) -> row

    @classmethod
    def build(
        cls, maps: RegionMaps, images: Sequence[str], root: Path, load: ImageLoader
    ) -> ColourBaseline:
        """Loads every image under `root` and describes each of its regions."""
        per_level: dict[int, list[tuple[str, np.ndarray]]] = {}
        for image in images:
            pixels = load(root / image)
            if tuple(pixels.shape[:2]) != maps.size(image):
                raise ValueError(
                    f"{root / image}: loads as {pixels.shape[:2]}, indexed as {maps.size(image)}"
                    " (changed since indexing?)"
                )
            for level, label_map in enumerate(maps.label_maps(image)):
                hist = colour_histograms(pixels, label_map)
                per_level.setdefault(level, []).append((image, hist))
        codes = {image: code for code, image in enumerate(images)}
        vectors, image_codes, rows = [], [], []
        for level in range(len(per_level)):
            entries = per_level[level]
            vectors.append(np.concatenate([hist for _, hist in entries]))
            image_codes.append(np.concatenate([np.full(len(h), codes[i]) for i, h in entries]))
            starts = np.cumsum([0] + [len(h) for _, h in entries])
            rows.append(
                {(i, r): int(s) + r for (i, h), s in zip(entries, starts) for r in range(len(h))}
            )
        return cls(vectors, image_codes, rows)

    def rank(self, level: int, query: tuple[str, int], target: tuple[str, int]) -> int:
        """1-based rank of `target` for `query` at `level` among every region of that level
        but the query image's; regions scoring the same as the target rank before it."""
        vectors, codes, rows = self.vectors[level], self.image_codes[level], self.rows[level]
        query_row, target_row = rows[query], rows[target]
        scores = vectors @ vectors[query_row]
        others = codes != codes[query_row]
        return int(np.count_nonzero(others & (scores >= scores[target_row])))


def hit_rank(hits: list[Hit], image: str, level: int, region: int) -> int | None:
    """1-based position of (image, level, region) among `hits`, None if absent."""
    for position, hit in enumerate(hits, start=1):
        if hit.image == image and hit.level == level and hit.region == region:
            return position
    return None


def evaluate_retrieval(index: SegmentIndex, pairs: Sequence[CopyPair], load: ImageLoader) -> dict:
    """Recall@1/@10 per level of the index's embeddings, over the given copy pairs.

    Args:
        index: index over a work folder holding the pairs' originals and copies.
        pairs: originals and copies (image names of the index) with their transforms.
        load: image reader for the colour baseline (the model's, so that the frames match).

    Returns:
        {"levels": per level summary, "all": pooled summary, "queries": one record per query,
        "pairs_used", "pairs_skipped", "seconds"}; recalls are None for levels without queries.
    """
    start = time.perf_counter()
    maps = RegionMaps(index)
    used, skipped = _usable_pairs(maps, pairs)
    images = index.images()
    baseline = ColourBaseline.build(maps, images, index.data_root, load)
    baseline_seconds = time.perf_counter() - start
    level_counts = index.metadata.groupby(["level", "image"]).size()
    records = []
    for number, pair in used:
        original, copy = maps.label_maps(pair.original), maps.label_maps(pair.copy)
        for level in range(min(len(original), len(copy))):
            counts = level_counts[level]
            candidates = int(counts.sum() - counts.get(pair.original, 0))
            for region, target, iou in zip(
                *copy_targets(original[level], copy[level], pair.transform)
            ):
                records.append(
                    _query(index, baseline, number, pair, level, int(region), int(target))
                    | {"iou": float(iou), "candidates": candidates}
                )
    levels = [_summary([r for r in records if r["level"] == lv]) for lv in range(index.num_levels)]
    return {
        "levels": [{"level": lv, **s} for lv, s in enumerate(levels)],
        "all": _summary(records),
        "queries": records,
        "pairs_used": len(used),
        "pairs_skipped": skipped,
        "seconds": {
            "baseline": baseline_seconds,
            "queries": time.perf_counter() - start - baseline_seconds,
        },
    }


def _usable_pairs(
    maps: RegionMaps, pairs: Sequence[CopyPair]
) -> tuple[list[tuple[int, CopyPair]], list[dict]]:
    """Pairs whose two images are indexed at the sizes the transform expects; the others, why."""
    used, skipped = [], []
    for number, pair in enumerate(pairs):
        reason = None
        for image, size in (
            (pair.original, pair.transform.source_size),
            (pair.copy, pair.transform.copy_size),
        ):
            if reason is None and image not in maps:
                reason = f"{image} is not in the index (skipped at extraction?)"
            elif reason is None and maps.size(image) != tuple(size):
                reason = f"{image} is indexed at {maps.size(image)}, the transform says {size}"
        if reason is None:
            used.append((number, pair))
        else:
            LOG.warning("pair %d left out: %s", number, reason)
            skipped.append({"original": pair.original, "copy": pair.copy, "reason": reason})
    return used, skipped


def _query(
    index: SegmentIndex,
    baseline: ColourBaseline,
    number: int,
    pair: CopyPair,
    level: int,
    region: int,
    target: int,
) -> dict:
    """Ranks of one query's target under each method (None = not in the top max(TOP_K))."""
    k = max(TOP_K)
    same_level = index.search_region(pair.original, level, region, k, exclude_image=True)
    every_level = index.search_region(
        pair.original, level, region, k, levels=range(index.num_levels), exclude_image=True
    )
    colour = baseline.rank(level, (pair.original, region), (pair.copy, target))
    return {
        "pair": number,
        "level": level,
        "region": region,
        "target": target,
        "rank": {
            "hsg": hit_rank(same_level, pair.copy, level, target),
            "hsg_all_levels": hit_rank(every_level, pair.copy, level, target),
            "colour_histogram": colour if colour <= k else None,
        },
    }


def _summary(records: list[dict]) -> dict:
    """Query count, mean target IoU, recall@k per method and the chance recall@k."""
    count = len(records)

    def mean(values) -> float | None:
        return float(np.mean(values)) if count else None

    ious = [r["iou"] for r in records]
    summary = {
        "queries": count,
        "mean_target_iou": mean(ious),
        f"share_target_iou_ge_{GOOD_IOU}": mean([iou >= GOOD_IOU for iou in ious]),
    }
    for method in METHODS:
        ranks = [r["rank"][method] for r in records]
        summary[method] = {
            f"recall@{k}": mean([rank is not None and rank <= k for rank in ranks]) for k in TOP_K
        }
    summary["chance"] = {
        f"recall@{k}": mean([min(k, r["candidates"]) / max(r["candidates"], 1) for r in records])
        for k in TOP_K
    }
    return summary
