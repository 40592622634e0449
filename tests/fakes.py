"""A numpy-only stand-in for HSGPredictor: nested grid hierarchies with colour-based embeddings."""

from __future__ import annotations

import numpy as np

from hsg_core.hierarchy import build_prediction
from hsg_core.types import Prediction


class GridPredictor:
    """Level 0: an 8x8 grid of cells; level 1: 4x4 blocks; level 2: 2x2; level 3: the image.

    Region embeddings are the unit mean colour of the region plus its grid position, so similar
    colours retrieve each other and results are deterministic.
    """

    checkpoint_hash = "f" * 64
    num_levels = 4
    input_side = 1024  # HSGPredictor's input frame

    def read_image(self, path) -> np.ndarray:
        from hsg_core.images import load_image

        return load_image(path, max_side=self.input_side)

    def fit_input(self, image: np.ndarray, what: str = "image") -> np.ndarray:
        from hsg_core.images import check_rgb, downscale_to

        return downscale_to(check_rgb(image, what), self.input_side)

    def predict(self, image: np.ndarray) -> Prediction:
        h, w = image.shape[:2]
        rows = np.minimum(np.arange(h) * 8 // h, 7)
        cols = np.minimum(np.arange(w) * 8 // w, 7)
        segment_map = rows[:, None] * 8 + cols[None, :]
        cell_rows, cell_cols = np.divmod(np.arange(64), 8)
        groups = [(cell_rows // f) * (8 // f) + cell_cols // f for f in (2, 4, 8)]
        chains = [np.arange(64)] + [np.unique(g, return_inverse=True)[1] for g in groups]
        embeddings = []
        for chain in chains:
            ids = chain[segment_map]
            num = int(ids.max()) + 1
            colour = np.stack(
                [
                    np.bincount(ids.ravel(), image[..., c].ravel().astype(float), num)
                    for c in range(3)
                ],
                1,
            )
            colour /= np.bincount(ids.ravel(), minlength=num)[:, None]
            vec = np.concatenate([colour / 255.0 - 0.5, np.full((num, 1), 0.3)], 1)
            embeddings.append((vec / np.linalg.norm(vec, axis=1, keepdims=True)).astype(np.float32))
        return build_prediction(
            segment_map, groups, embeddings, (h, w), {"checkpoint": self.checkpoint_hash}
        )
