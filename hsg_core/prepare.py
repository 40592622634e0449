"""The model-free part of a prediction: read, downscale, edge map or oversegmentation (numpy).

`Preparer` holds only settings (no model), so it pickles into `torch.utils.data.DataLoader` worker
processes; `HSGPredictor.prepare` and the pipelined extractor (`hsg_core.extract_pipeline`) both
go through it, so a prediction is the same whichever process prepared its image.

Per hierarchy (`grouping.infer_hierarchy`):
* "contour": the HED (or gradient) edge map at `contour.edge_side`; the contour tree itself needs
  the backbone's features, so it is built after the device stage.
* "transformers": the oversegmentation at the working size (HED edges + watershed UCM cut, or
  SLIC/Felzenszwalb), the level-0 prior of k-means.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .config import OversegConfig
from .images import check_rgb, downscale_to, load_image
from .overseg import OversegCache, edge_map, oversegment


@dataclass
class Prepared:
    """One image ready for the device stage.

    image_size: (H, W) of the image as read; label maps are resized back to it.
    work: [h, w, 3] uint8, the image at the predictor's working size (the backbone's input).
    prior: contour: [He, We] float32 edge map in [0, 1]; transformers: [h, w] int32 oversegments.
    seconds: time of each stage run so far ("decode", "edges" or "overseg").
    """

    image_size: tuple[int, int]
    work: np.ndarray
    prior: np.ndarray
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass
class Preparer:
    """Settings of the model-free stages; picklable (the cache drops its lock when pickled).

    hierarchy: "contour" or "transformers"; work_side, edge_side: longer sides (pixels) of the
    backbone input and of the contour edge map; overseg: the `OversegConfig`; device: where HED
    runs (the model's device).
    """

    hierarchy: str
    work_side: int
    edge_side: int
    overseg: OversegConfig
    cache: OversegCache | None = None
    device: str = "cpu"

    def __call__(self, image: np.ndarray) -> Prepared:
        """[H, W, 3] uint8 RGB (grayscale and RGBA converted) -> Prepared."""
        image = check_rgb(image)
        work = downscale_to(image, self.work_side)
        device = torch.device(self.device)
        start = time.perf_counter()
        if self.hierarchy == "contour":
            if image.shape[0] * image.shape[1] < 2:  # higra's watershed crashes on one pixel
                raise ValueError(f"a {image.shape[1]}x{image.shape[0]} image has no contours")
            edge_image = downscale_to(image, self.edge_side)
            prior = edge_map(edge_image, self.overseg, cache=self.cache, device=device)
            stage = "edges"
        else:
            prior = oversegment(work, self.overseg, cache=self.cache, device=device)
            stage = "overseg"
        seconds = {stage: round(time.perf_counter() - start, 4)}
        return Prepared(tuple(image.shape[:2]), work, prior, seconds)

    def read(self, path: str | Path, max_side: int = 0) -> Prepared:
        """Decode `path` (`load_image` rules, `max_side` > 0 downscales on reading), then prepare.

        Raises:
            ImageReadError: the file cannot be read as an image.
        """
        start = time.perf_counter()
        image = load_image(path, max_side=max_side)
        decode = round(time.perf_counter() - start, 4)
        prepared = self(image)
        prepared.seconds = {"decode": decode, **prepared.seconds}
        return prepared
