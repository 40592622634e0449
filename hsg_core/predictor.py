"""HSGPredictor: one image in, a nested hierarchy of regions with embeddings out (numpy).

Like segment-anything's SamPredictor: `set_image` runs the network once and caches the result;
`segment_at` / `prediction` only index the cache. `predict` is the stateless, thread-safe path
(the app and the index builder use it); `predict_batch` runs the backbone once per working size
over several images. Both split into the model-free stages (`preparer()`, `hsg_core.prepare`: the
working-size image and the edge map or oversegmentation), which the pipelined index extractor
runs in worker processes, and the device stages (`predict_prepared`).

Inference path (one view): the image is downscaled so its longer side is at most `work_side`;
pixel embeddings are upsampled bilinearly to that resolution and renormalised; spherical k-means
with location features (grid `infer_grid`) ∩ oversegments gives the level-0 segments (a 1x1 grid:
the oversegments themselves); the clustering transformers group them into levels 1..L; label
maps are resized (nearest) back to the image's own size.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from hsg_files import file_sha256

from .checkpoint import (
    WHITENING_KEY,
    check_finite,
    checkpoint_config,
    inference_config,
    load_model_state,
    read_checkpoint,
)
from .contour_tree import ContourTree, ContourTreeParams
from .hierarchy import build_prediction, resize_nearest, segment_chains
from .images import ImageReadError, check_rgb, downscale_to, load_image
from .model import HSG
from .overseg import OversegCache
from .prepare import Prepared, Preparer
from .region_pooling import (
    chain_sums,
    grid_to_pixels,
    level_of_segments,
    patch_overlap,
    region_sums,
    unit_rows,
)
from .segments import (
    initial_clusters,
    intersect_segments,
    location_features,
    segment_means,
    spherical_kmeans,
)
from .semantic_edges import semantic_edges
from .types import Prediction
from .weights import cache_dir
from .whitening import DescriptorWhitening, WhiteningError, descriptor_setting


def pick_device(name: str = "auto") -> torch.device:
    """'auto' -> CUDA when present, else CPU; otherwise torch.device(name)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


INPUT_SIDE = 1024  # the input frame: longer side at most this; label maps, boxes, masks live in it


class HSGPredictor:
    def __init__(
        self,
        model: HSG,
        *,
        work_side: int | None = None,
        input_side: int = INPUT_SIDE,
        checkpoint_hash: str = "",
        checkpoint_path: str = "",
        overseg_cache: OversegCache | None = None,
        whitening: DescriptorWhitening | None = None,
    ) -> None:
        self.model = model.eval()
        self.config = model.config
        self.work_side = work_side or self.config.data.max_side or 448
        self.input_side = input_side  # `read_image` / `fit_input`: the explorer, index, segment
        self.checkpoint_hash = checkpoint_hash
        self.checkpoint_path = checkpoint_path  # named in errors
        if self.config.model.backbone.startswith("resnet"):
            self.model.backbone.set_output_stride(self.config.model.infer_output_stride)
        self.cache = (
            overseg_cache
            if overseg_cache is not None
            else (OversegCache(cache_dir() / "overseg") if self.config.overseg.cache else None)
        )
        self.prediction: Prediction | None = None
        self._lock = threading.Lock()
        self.whitening = whitening  # applied to every level's descriptors (`hsg_core.whitening`)
        if whitening is not None and whitening.descriptor != descriptor_setting(self.config):
            raise WhiteningError(
                f"{checkpoint_path or 'checkpoint'}: its descriptor whitening was fitted for "
                f"{whitening.descriptor}, the config gives {descriptor_setting(self.config)} "
                "(fit it again: hsg fit-whitening)"
            )

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def hierarchy(self) -> str:
        """ "transformers" (HSG's clustering transformers) or "contour" (the contour-aware tree)."""
        return self.config.grouping.infer_hierarchy

    @property
    def num_levels(self) -> int:
        if self.hierarchy == "contour":
            return len(self.config.contour.level_altitudes)
        return len(self.config.grouping.level_clusters) + 1

    def set_image(self, image: np.ndarray) -> Prediction:
        """Run the model on `image` [H, W, 3] uint8 RGB and cache the result."""
        self.prediction = self.predict(image)
        return self.prediction

    def segment_at(self, level: int, x: int, y: int) -> int:
        if self.prediction is None:
            raise RuntimeError("call set_image() before segment_at()")
        return self.prediction.segment_at(level, x, y)

    def read_image(self, path: str | Path) -> np.ndarray:
        """The image at `path` in the predictor's input frame: [H, W, 3] uint8, longer side at most
        `input_side` (`load_image` downscales on reading). The explorer, index builds and
        `hsg segment` all read this way, so their regions are in one frame."""
        return load_image(path, max_side=self.input_side)

    def fit_input(self, image: np.ndarray, what: str = "image") -> np.ndarray:
        """An array (an upload) brought into the input frame: RGB, longer side <= `input_side`;
        `what` names it in the ValueError of a bad array (`check_rgb`)."""
        return downscale_to(check_rgb(image, what), self.input_side)

    def predict_path(self, path: str | Path) -> Prediction:
        return self.predict(self.read_image(path))

    def predict(self, image: np.ndarray) -> Prediction:
        """[H, W, 3] uint8 RGB -> Prediction (stateless; safe to call from several threads)."""
        return self.predict_batch([image])[0]

    def predict_batch(self, images: Sequence[np.ndarray]) -> list[Prediction]:
        """B images [H_i, W_i, 3] uint8 RGB -> B Predictions, each equal to `predict` of that image.

        One backbone forward per working size among the images (sizes are bucketed, not padded:
        padding would change a ViT's attention and a CNN's borders, hence the regions). Photos of
        one folder share a few sizes (BSDS500: two), so buckets are full in practice. With a ViT
        (the shipped DINOv2) the regions are the same and descriptors equal to ~1e-6; a CNN's
        oneDNN convolutions differ by ~1e-6 with the batch size, which can move a few pixels of
        the contour tree's finest cut (altitude 0), where watershed basins tie.
        """
        images = [check_rgb(image) for image in images]
        with self._lock, torch.no_grad():
            preparer = self.preparer()
            return [p for p, _ in self._predict_prepared([preparer(im) for im in images])]

    def preparer(self) -> Preparer:
        """The model-free stages with these settings (picklable, for worker processes)."""
        c = self.config
        if self.hierarchy == "contour":
            check_contour_config(c.contour)
        return Preparer(
            self.hierarchy,
            self.work_side,
            c.contour.edge_side,
            c.overseg,
            self.cache,
            str(self.device),
        )

    def predict_prepared(self, prepared: Sequence[Prepared]) -> list[Prediction]:
        """B images prepared by `preparer()` (here or in another process) -> B Predictions."""
        with self._lock, torch.no_grad():
            return [p for p, _ in self._predict_prepared(prepared)]

    def predict_tree(
        self, image: np.ndarray
    ) -> tuple[Prediction, Callable[[int], np.ndarray] | None]:
        """`predict`, plus (contour hierarchy only) a function n -> [H, W] int32, the hierarchy's finest
        cut with at most n regions at the image's size: every scale, not only the levels."""
        image = check_rgb(image)
        with self._lock, torch.no_grad():
            prediction, tree = self._predict_prepared([self.preparer()(image)])[0]
        if tree is None:
            return prediction, None
        return prediction, lambda n: resize_nearest(tree.cut_regions(int(n)), image.shape[:2])

    def _predict_prepared(
        self, prepared: Sequence[Prepared]
    ) -> list[tuple[Prediction, ContourTree | None]]:
        """Per image (prediction, contour tree or None); one backbone forward per working size."""
        out: list = [None] * len(prepared)
        for rows in same_size_rows([p.work.shape for p in prepared]):
            start = time.perf_counter()
            backbone, embeddings = self._grids(np.stack([prepared[i].work for i in rows]))
            share = round((time.perf_counter() - start) / len(rows), 4)
            for j, i in enumerate(rows):
                seconds = {**prepared[i].seconds, "features": share}
                out[i] = self._finish(prepared[i], backbone[j], embeddings[j], seconds)
        return out

    def _grids(self, works: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, h, w, 3] uint8 -> (backbone grids [B, C, gh, gw], unit embeddings [B, D, gh, gw])."""
        x = torch.tensor(works, device=self.device).permute(0, 3, 1, 2).float() / 255.0
        backbone = self.model.backbone(self.model.normalize(x))
        return backbone, F.normalize(self.model.head(backbone), dim=1)

    def _features(self, work: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """[h, w, 3] uint8 -> (backbone grid [C, gh, gw], unit embedding grid [D, gh, gw])."""
        backbone, embeddings = self._grids(work[None])
        self._check_finite(embeddings)
        return backbone[0], embeddings[0]

    def _check_finite(self, embeddings: torch.Tensor) -> None:
        if not torch.isfinite(embeddings).all():
            source = self.checkpoint_path or f"checkpoint {self.checkpoint_hash[:12]}"
            raise ValueError(
                f"{source}: the model produced non-finite embeddings (NaN/inf weights, or "
                "weights so large they overflow)"
            )

    def _finish(
        self,
        prepared: Prepared,
        backbone: torch.Tensor,
        embeddings: torch.Tensor,
        seconds: dict[str, float],
    ) -> tuple[Prediction, ContourTree | None]:
        """The stages after the backbone, from one image's grids [C, gh, gw] and [D, gh, gw]."""
        self._check_finite(embeddings)
        if self.hierarchy == "contour":
            return self._finish_contour(prepared, backbone, embeddings, seconds)
        return self._finish_transformers(prepared, embeddings, seconds), None

    def _pixel_embeddings(self, embeddings: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Unit grid [D, gh, gw] -> unit pixel embeddings [h*w, D] at `size` (h, w)."""
        emb = F.interpolate(embeddings[None], size=size, mode="bilinear", align_corners=False)
        return F.normalize(emb[0].flatten(1).t().float(), dim=1)

    def _segments(self, flat: torch.Tensor, superpixels: np.ndarray) -> torch.Tensor:
        """Level-0 segment id per pixel [h*w]: k-means (with location) ∩ oversegments."""
        h, w = superpixels.shape
        g = self.config.grouping
        loc = location_features(h, w, flat.device).reshape(2, -1).t()
        feats = F.normalize(torch.cat([flat, loc], dim=1), dim=1)[None]
        init, num_clusters = initial_clusters(
            tuple(g.infer_grid), (h, w), flat.device, g.kmeans_init
        )
        clusters = spherical_kmeans(feats, init, num_clusters, g.kmeans_iterations)
        sp = torch.from_numpy(superpixels.astype(np.int64)).to(flat.device).reshape(1, -1)
        return intersect_segments(clusters, sp)[0][0]

    def _finish_transformers(
        self, prepared: Prepared, embeddings: torch.Tensor, seconds: dict[str, float]
    ) -> Prediction:
        """HSG's clustering transformers over k-means ∩ oversegments; meta["seconds"] adds
        grouping (k-means, transformers, region embeddings)."""
        clock = Stopwatch()
        h, w = prepared.work.shape[:2]
        flat = self._pixel_embeddings(embeddings, (h, w))
        seg = self._segments(flat, prepared.prior)
        num = int(seg.max()) + 1
        nodes = segment_means(flat, seg, num)
        pos = segment_means(
            self.model.cell_positions(h, w, 1.0).reshape(h * w, -1), seg, num, normalize=False
        )
        mask = torch.ones(1, num, dtype=torch.bool, device=flat.device)
        hier = self.model.group(nodes[None], pos[None], mask)
        groups = [g[0].cpu().numpy() for g in hier.node_groups]
        level_embeddings = []
        for chain in segment_chains(groups):
            ids = torch.from_numpy(chain).to(flat.device)[seg]
            level_embeddings.append(segment_means(flat, ids, int(chain.max()) + 1).cpu().numpy())
        meta = {"checkpoint": self.checkpoint_hash, "work_size": [h, w]}
        prediction = build_prediction(
            seg.reshape(h, w).cpu().numpy(),
            groups,
            self._whitened(level_embeddings),
            prepared.image_size,
            meta,
        )
        clock.lap("grouping", None)
        prediction.meta["seconds"] = {**seconds, **clock.seconds}
        return prediction

    def _finish_contour(
        self,
        prepared: Prepared,
        backbone: torch.Tensor,
        embeddings: torch.Tensor,
        seconds: dict[str, float],
    ) -> tuple[Prediction, ContourTree]:
        """The contour tree's cuts at `contour.level_altitudes`, nested by construction.

        meta["seconds"] holds the time of each stage: edges (HED), features (backbone + head),
        tree (semantic edge map + both stages), levels (cuts and region embeddings); "decode"
        too when the image was read by `Preparer.read`."""
        c, clock, edges, work = self.config.contour, Stopwatch(), prepared.prior, prepared.work
        stride = self.model.backbone.output_stride
        valid = (work.shape[0] / stride, work.shape[1] / stride)
        grid = backbone if c.semantic_features == "backbone" else embeddings
        semantic = semantic_edges(grid, valid, edges.shape, c.semantic_offset, c.semantic_scale)
        pixels = grid_to_pixels(embeddings, valid, edges.shape)  # [D, He*We]
        params = ContourTreeParams(
            c.fine_semantic, c.coarse_semantic, c.region_semantic, c.switch_regions
        )
        tree = clock.lap(
            "tree",
            ContourTree.build(edges, semantic, params, lambda labels: region_sums(pixels, labels)),
        )
        maps = [tree.cut_altitude(a) for a in sorted(c.level_altitudes)]
        segment_map, groups = maps[0], [level_of_segments(maps[0], m) for m in maps[1:]]
        level_embeddings = self._descriptors(
            segment_map, segment_chains(groups), pixels, backbone, valid
        )
        meta = {
            "checkpoint": self.checkpoint_hash,
            "work_size": list(work.shape[:2]),
            "edge_size": list(edges.shape),
            "hierarchy": "contour",
        }
        prediction = build_prediction(
            segment_map, groups, self._whitened(level_embeddings), prepared.image_size, meta
        )
        clock.lap("levels", None)
        prediction.meta["seconds"] = {**seconds, **clock.seconds}
        return prediction, tree

    def _whitened(self, per_level: list[np.ndarray]) -> list[np.ndarray]:
        """Per level [N_l, D] descriptors, whitened when the checkpoint holds a whitening."""
        return per_level if self.whitening is None else self.whitening.apply_levels(per_level)

    def _descriptors(
        self,
        segment_map: np.ndarray,
        chains: list[np.ndarray],
        pixels: np.ndarray,
        backbone: torch.Tensor,
        valid: tuple[float, float],
    ) -> list[np.ndarray]:
        """Per level [N_l, D'] unit region descriptors (`contour.region_descriptor`) from level-0 sums."""
        sums = region_sums(pixels, segment_map)
        descriptors = [unit_rows(chain_sums(sums, chain)) for chain in chains]
        if self.config.contour.region_descriptor == "embedding+backbone":
            grid = F.normalize(backbone.float(), dim=0).flatten(1).t().cpu().numpy()  # [P, C]
            patch_sums = patch_overlap(segment_map, tuple(backbone.shape[1:]), valid) @ grid
            descriptors = [
                unit_rows(np.concatenate([d, unit_rows(chain_sums(patch_sums, chain))], 1))
                for d, chain in zip(descriptors, chains)
            ]
        return with_parent_context(descriptors, chains, self.config.contour.parent_context)


def with_parent_context(
    descriptors: list[np.ndarray], chains: list[np.ndarray], weight: float
) -> list[np.ndarray]:
    """Per level [N_l, 2D] unit rows [d, weight * d_parent] (the top level is its own parent), or the
    descriptors unchanged when weight is 0. Regions that look alike but lie in different wholes
    (a patch of sky over the sea, one over a field) then differ."""
    if weight == 0:
        return descriptors
    out = []
    for level, (own, chain) in enumerate(zip(descriptors, chains)):
        parent_level = min(level + 1, len(chains) - 1)
        parent = np.zeros(own.shape[0], dtype=np.int64)
        parent[chain] = chains[parent_level]
        out.append(unit_rows(np.concatenate([own, weight * descriptors[parent_level][parent]], 1)))
    return out


CONTOUR_CHOICES = {
    "semantic_features": ("backbone", "embedding"),
    "region_descriptor": ("embedding", "embedding+backbone"),
}


def check_contour_config(c) -> None:
    """One-line errors for contour settings outside their choices."""
    for name, choices in CONTOUR_CHOICES.items():
        if getattr(c, name) not in choices:
            raise ValueError(
                f"contour.{name} must be one of {', '.join(choices)}, got {getattr(c, name)!r}"
            )
    if not c.parent_context >= 0:
        raise ValueError(f"contour.parent_context must be >= 0, got {c.parent_context!r}")


def same_size_rows(shapes: Sequence[tuple[int, ...]]) -> list[list[int]]:
    """Positions grouped by equal shape, each group in input order, groups by first appearance."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, shape in enumerate(shapes):
        groups.setdefault(tuple(shape), []).append(i)
    return list(groups.values())


class Stopwatch:
    """Seconds between successive `lap` calls, by name."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str, value):
        now = time.perf_counter()
        self.seconds[name] = round(now - self._last, 4)
        self._last = now
        return value


def make_extractor(predictor: HSGPredictor, max_side: int | None = None):
    """Index-side callable: a batch of image paths -> per path a Prediction, or the error it raised.

    Images are read in the predictor's input frame (`max_side` None: `predictor.input_side`, as
    the explorer reads them; 0: full size); unreadable images and model errors are returned, not
    raised, so one bad file never stops a build.
    """
    max_side = predictor.input_side if max_side is None else max_side

    def extract(paths):
        out = []
        for path in paths:
            try:
                out.append(predictor.predict(load_image(path, max_side=max_side)))
            except (ImageReadError, ValueError) as err:
                out.append(err)
        return out

    return extract


def load_predictor(
    checkpoint: str | Path, device: str | torch.device = "auto", **kwargs
) -> HSGPredictor:
    """Build the model from the config stored in `checkpoint`, load its weights, move to `device`."""
    data = read_checkpoint(checkpoint)
    config = inference_config(
        checkpoint_config(data, checkpoint)
    )  # opens no file the checkpoint names
    check_finite(data["model"], checkpoint)
    model = HSG(config)
    load_model_state(model, data["model"], checkpoint, config)
    device = pick_device(device) if isinstance(device, str) else device
    whitening = data.get(WHITENING_KEY)
    return HSGPredictor(
        model.to(device),
        checkpoint_hash=file_sha256(checkpoint),
        checkpoint_path=str(checkpoint),
        whitening=None
        if whitening is None
        else DescriptorWhitening.from_state(whitening, checkpoint),
        **kwargs,
    )
