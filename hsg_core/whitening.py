"""Descriptor whitening: a fixed linear map, fitted without labels, applied to every region descriptor.

Mean-pooled region descriptors crowd into a few directions (two unrelated regions already have a
high cosine), so a copy of a region in a cropped, flipped, colour-jittered image is often out-ranked
by look-alikes. Rotating them onto their principal axes and rescaling axis i by eigenvalue_i ** power
(PCA whitening; power -0.5 = full, -0.25 = partial) spreads them out. The map is fitted once on the
descriptors of a photo collection (`hsg fit-whitening`, BSDS500 train for the shipped model) and is
stored in the checkpoint, so the index, the explorer's uploads and every query use the same one.

    w(d) = unit((d - mean) @ projection),   projection = eigenvectors * eigenvalues ** power
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .region_pooling import unit_rows

LOG = logging.getLogger(__name__)
MIN_SAMPLES_PER_DIM = 2  # a covariance from fewer descriptors than 2 x their size is refused


class WhiteningError(ValueError):
    """A whitening cannot be fitted or does not fit the descriptors; the message says why."""


@dataclass(frozen=True)
class DescriptorWhitening:
    """mean [D] and projection [D, D] (float32); `power`, and what it was fitted on (for the model card)."""

    mean: np.ndarray
    projection: np.ndarray
    power: float
    descriptor: str  # `descriptor_setting` of the config it was fitted under
    fitted_on: str = ""  # e.g. "BSDS500 train: 200 images, 31000 regions"

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    @classmethod
    def fit(
        cls, descriptors: np.ndarray, power: float, descriptor: str, fitted_on: str = ""
    ) -> DescriptorWhitening:
        """PCA whitening of `descriptors` [N, D] with eigenvalues raised to `power` (in [-0.5, 0])."""
        x = np.asarray(descriptors, dtype=np.float64)
        if x.ndim != 2 or not np.isfinite(x).all():
            raise WhiteningError(f"descriptors must be a finite [N, D] array, got shape {x.shape}")
        check_power(power)
        if x.shape[0] < MIN_SAMPLES_PER_DIM * x.shape[1]:
            raise WhiteningError(
                f"{x.shape[0]} descriptors are too few to fit a {x.shape[1]}-d whitening "
                f"(at least {MIN_SAMPLES_PER_DIM * x.shape[1]}: use more images)"
            )
        mean = x.mean(0)
        eigenvalues, eigenvectors = np.linalg.eigh(np.cov((x - mean).T))
        floor = 1e-6 * float(eigenvalues.max())  # directions with no variance are not blown up
        projection = eigenvectors * np.maximum(eigenvalues, floor) ** power
        return cls(
            mean.astype(np.float32),
            projection.astype(np.float32),
            float(power),
            descriptor,
            fitted_on,
        )

    def apply(self, descriptors: np.ndarray) -> np.ndarray:
        """[N, D] descriptors -> [N, D] float32 unit rows."""
        if descriptors.ndim != 2 or descriptors.shape[1] != self.dim:
            raise WhiteningError(
                f"the whitening was fitted on {self.dim}-d descriptors, these are "
                f"{descriptors.shape[1] if descriptors.ndim == 2 else descriptors.shape}-d "
                "(fit it again for this descriptor setting: hsg fit-whitening)"
            )
        return unit_rows((descriptors.astype(np.float32) - self.mean) @ self.projection)

    def apply_levels(self, per_level: Sequence[np.ndarray]) -> list[np.ndarray]:
        return [self.apply(d) for d in per_level]

    def to_state(self) -> dict:
        """What a checkpoint stores (tensors and plain values: `weights_only` loading)."""
        return {
            "mean": torch.from_numpy(self.mean.copy()),
            "projection": torch.from_numpy(self.projection.copy()),
            "power": self.power,
            "descriptor": self.descriptor,
            "fitted_on": self.fitted_on,
        }

    @classmethod
    def from_state(cls, state: object, path: str | os.PathLike) -> DescriptorWhitening:
        """Back from `to_state`; a malformed entry raises WhiteningError naming `path`."""
        try:
            mean = state["mean"].float().numpy()  # type: ignore[index]
            projection = state["projection"].float().numpy()  # type: ignore[index]
            power, descriptor = float(state["power"]), str(state["descriptor"])  # type: ignore[index]
            fitted_on = str(state.get("fitted_on", ""))  # type: ignore[union-attr]
        except (TypeError, KeyError, AttributeError, ValueError) as err:
            raise WhiteningError(
                f"{path}: malformed descriptor_whitening entry ({err!r})"
            ) from None
        dim = mean.shape[0] if mean.ndim == 1 else -1
        if projection.shape != (dim, dim):
            raise WhiteningError(
                f"{path}: descriptor_whitening has mean {list(mean.shape)} and projection "
                f"{list(projection.shape)}; expected [D] and [D, D]"
            )
        if not (np.isfinite(mean).all() and np.isfinite(projection).all()):
            raise WhiteningError(f"{path}: descriptor_whitening holds NaN or inf")
        return cls(mean, projection, power, descriptor, fitted_on)


def check_power(power: float) -> None:
    """Raises WhiteningError unless `power` lies in [-0.5, 0] (full whitening .. centring only)."""
    if not -0.5 <= power <= 0:
        raise WhiteningError(f"power must lie in [-0.5, 0], got {power}")


def descriptor_setting(config) -> str:
    """The settings that make a region descriptor (an `HSGConfig`'s): a whitening fits only these."""
    c = config.contour
    return (
        f"hierarchy={config.grouping.infer_hierarchy} region_descriptor={c.region_descriptor} "
        f"parent_context={c.parent_context:g}"
    )


def fit_for_checkpoint(
    checkpoint: str | os.PathLike,
    out: str | os.PathLike,
    images: Sequence[os.PathLike],
    power: float,
    device: str = "auto",
    name: str = "",
    progress=None,
) -> DescriptorWhitening:
    """Fit a whitening on the raw descriptors (every level) of `images` as `checkpoint` segments
    them, and write `checkpoint` with it to `out` (atomically; a whitening already in `checkpoint`
    is replaced, never stacked). Unreadable images are skipped with a warning.

    Args:
        progress: optional callable wrapping an iterable (e.g. tqdm), for a progress bar.
        name: what the images are, for the model card ("BSDS500 train").
    """
    from .checkpoint import WHITENING_KEY, atomic_torch_save, read_checkpoint
    from .images import ImageReadError
    from .predictor import load_predictor

    check_power(power)  # before minutes of segmenting, not after
    predictor = load_predictor(checkpoint, device)
    predictor.whitening = None  # fitted on what the model makes, not on whitened descriptors
    descriptors, used = [], 0
    for path in progress(images) if progress else images:
        try:
            prediction = predictor.predict_path(path)
        except (ImageReadError, ValueError) as err:
            LOG.warning("%s: skipped (%s)", path, err)
            continue
        descriptors += [level.embeddings for level in prediction.levels]
        used += 1
    if not descriptors:
        raise WhiteningError("no image could be segmented: nothing to fit a whitening on")
    stacked = np.concatenate(descriptors)
    fitted_on = f"{name or 'images'}: {used} images, {len(stacked)} regions"
    whitening = DescriptorWhitening.fit(
        stacked, power, descriptor_setting(predictor.config), fitted_on
    )
    data = read_checkpoint(checkpoint)
    data[WHITENING_KEY] = whitening.to_state()
    atomic_torch_save(data, out)
    return whitening
