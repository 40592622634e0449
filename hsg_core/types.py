"""Plain-numpy containers that cross module boundaries (predictor -> index, app, CLI).

Nothing here imports torch, so a `Prediction` can live in `gr.State`, be pickled by the
index builder, or be written to JSON without touching the model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Level:
    """One level of the segment hierarchy of one image.

    Attributes:
        label_map: [H, W] int32, region id of every pixel, ids 0..N-1 (every id is used).
        embeddings: [N, D] float32, unit-normalised mean of the region's pixel embeddings.
        areas: [N] int64, pixel count of each region (in the image's own resolution).
        boxes: [N, 4] int32, (x0, y0, x1, y1) with x1/y1 exclusive.
        parents: [N] int32, id of the enclosing region at the next (coarser) level; -1 at the top.
    """

    label_map: np.ndarray
    embeddings: np.ndarray
    areas: np.ndarray
    boxes: np.ndarray
    parents: np.ndarray

    @property
    def num_regions(self) -> int:
        return int(self.embeddings.shape[0])

    def mask(self, region: int) -> np.ndarray:
        """[H, W] bool mask of one region."""
        return self.label_map == region


@dataclass
class Prediction:
    """A nested hierarchy of regions for one image; level 0 is the finest.

    Every level-l region lies inside exactly one level-(l+1) region: ``levels[l].parents``
    maps ids, and ``levels[l+1].label_map == levels[l].parents[levels[l].label_map]``.
    """

    levels: list[Level]
    image_size: tuple[int, int]  # (H, W)
    meta: dict = field(default_factory=dict)

    @property
    def num_levels(self) -> int:
        return len(self.levels)

    def _check_xy(self, level: int, x: int, y: int) -> None:
        h, w = self.image_size
        if not 0 <= level < self.num_levels:
            raise ValueError(
                f"level {level} out of range: this image has levels 0..{self.num_levels - 1}"
            )
        if not (0 <= x < w and 0 <= y < h):
            raise ValueError(f"pixel (x={x}, y={y}) outside the {w}x{h} image")

    def segment_at(self, level: int, x: int, y: int) -> int:
        """Region id at `level` that contains pixel column `x`, row `y`."""
        self._check_xy(level, int(x), int(y))
        return int(self.levels[level].label_map[int(y), int(x)])

    def chain_at(self, x: int, y: int) -> list[int]:
        """Region ids containing pixel (x, y) at every level, finest first."""
        return [self.segment_at(lv, x, y) for lv in range(self.num_levels)]

    def ancestors(self, level: int, region: int) -> list[int]:
        """Region ids from (level, region) upwards: [region, parent, grandparent, ...]."""
        chain = [int(region)]
        for lv in range(level, self.num_levels - 1):
            chain.append(int(self.levels[lv].parents[chain[-1]]))
        return chain

    def hierarchy_dict(self) -> dict:
        """JSON-ready description of the tree (no pixel data)."""
        return {
            "image_size": list(self.image_size),
            "meta": self.meta,
            "levels": [
                {
                    "level": i,
                    "regions": [
                        {
                            "id": r,
                            "area": int(lv.areas[r]),
                            "box": [int(v) for v in lv.boxes[r]],
                            "parent": int(lv.parents[r]),
                        }
                        for r in range(lv.num_regions)
                    ],
                }
                for i, lv in enumerate(self.levels)
            ],
        }

    def to_json(self) -> str:
        return json.dumps(self.hierarchy_dict(), indent=1)
