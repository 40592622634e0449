"""Unlabelled image folders as two-view training samples with shared oversegment ids.

Each image is oversegmented once (cached); each view is an independent augmentation of the
image and its oversegment map: horizontal flip, scale, pad + random crop, colour jitter and
grayscale. Because both views keep the source image's oversegment ids, (image, oversegment) is
the cross-view correspondence: no pixel matching is needed.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from .config import DataConfig, OversegConfig
from .images import IMAGE_SUFFIXES, ImageReadError, list_images, load_image
from .objective import Batch
from .overseg import OversegCache, oversegment
from .weights import cache_dir

LOG = logging.getLogger(__name__)


def _gray(rgb: Tensor) -> Tensor:
    return (0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2])[None]


def _rotate_hue(rgb: Tensor, turns: float) -> Tensor:
    """Rotate hue by `turns` of a full circle, as a rotation about the gray axis (YIQ plane)."""
    angle = 2 * math.pi * turns
    c, s = math.cos(angle), math.sin(angle)
    to_yiq = rgb.new_tensor(
        [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]]
    )
    rot = rgb.new_tensor([[1, 0, 0], [0, c, -s], [0, s, c]])
    matrix = torch.linalg.inv(to_yiq) @ rot @ to_yiq
    return torch.einsum("ij,jhw->ihw", matrix, rgb)


def color_jitter(
    rgb: Tensor, strength: tuple[float, float, float, float], rng: np.random.Generator
) -> Tensor:
    """Brightness, contrast, saturation, hue in a random order. rgb [3, H, W] in [0, 1]."""
    b, c, s, h = strength
    ops = [
        lambda x: x * rng.uniform(1 - b, 1 + b),
        lambda x: (x - _gray(x).mean()) * rng.uniform(1 - c, 1 + c) + _gray(x).mean(),
        lambda x: (x - _gray(x)) * rng.uniform(1 - s, 1 + s) + _gray(x),
        lambda x: _rotate_hue(x, rng.uniform(-h, h)),
    ]
    for i in rng.permutation(4):
        rgb = ops[i](rgb).clamp(0, 1)
    return rgb


def augment_view(
    image: Tensor, superpixels: Tensor, cfg: DataConfig, rng: np.random.Generator
) -> tuple[Tensor, Tensor]:
    """One random view: image [3, H, W] in [0, 1], superpixels [H, W] int64 -> crop-sized pair.

    Padding (when the scaled image is smaller than the crop) is 0 in the image — the mean after
    normalisation is applied later by the model — and -1 (ignore) in the superpixels.
    """
    if rng.random() < cfg.flip_prob:
        image, superpixels = image.flip(-1), superpixels.flip(-1)
    scale = rng.uniform(*cfg.scale_range)
    h, w = image.shape[1:]
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
    superpixels = F.interpolate(superpixels[None, None].float(), size=size, mode="nearest")[
        0, 0
    ].long()
    crop = cfg.crop_size
    ph, pw = max(crop - size[0], 0), max(crop - size[1], 0)
    image = F.pad(image, (0, pw, 0, ph), value=0.5)  # set to the mean again in `to_batch`
    superpixels = F.pad(superpixels, (0, pw, 0, ph), value=-1)
    y0 = int(rng.integers(0, image.shape[1] - crop + 1))
    x0 = int(rng.integers(0, image.shape[2] - crop + 1))
    image = image[:, y0 : y0 + crop, x0 : x0 + crop]
    superpixels = superpixels[y0 : y0 + crop, x0 : x0 + crop]
    if rng.random() < cfg.jitter_prob:
        image = color_jitter(image, cfg.jitter, rng)
    if rng.random() < cfg.grayscale_prob:
        image = _gray(image).expand(3, -1, -1)
    return image, superpixels


class MultiviewFolder(Dataset):
    """Images under `root` (recursive) -> (views [2, 3, c, c] in [0, 1], superpixels [2, c, c]).

    Unreadable files are reported once and replaced by the next readable image.
    """

    def __init__(
        self,
        root: str | Path,
        data: DataConfig,
        overseg: OversegConfig,
        *,
        seed: int = 0,
        overseg_cache: OversegCache | None = None,
    ) -> None:
        self.root, self.data, self.overseg, self.seed = Path(root), data, overseg, seed
        self.paths = list_images(self.root)
        if not self.paths:
            raise FileNotFoundError(f"{self.root}: no images ({', '.join(IMAGE_SUFFIXES)}) found")
        self.cache = overseg_cache or (
            OversegCache(cache_dir() / "overseg") if overseg.cache else None
        )
        self.bad: set[int] = set()
        self._orders: dict[int, Tensor] = {}

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Image [H, W, 3] uint8 and its oversegmentation [H, W] int32."""
        image = load_image(self.paths[index], max_side=self.data.max_side)
        return image, oversegment(image, self.overseg, cache=self.cache)

    def _readable(self, index: int) -> tuple[int, np.ndarray, np.ndarray]:
        for step in range(len(self.paths)):
            i = (index + step) % len(self.paths)
            if i in self.bad:
                continue
            try:
                return (i, *self.load(i))
            except ImageReadError as err:
                self.bad.add(i)
                LOG.warning("skipping unreadable image: %s", err)
        raise ImageReadError(
            f"{self.root}: none of the {len(self.paths)} images could be read "
            f"(e.g. {self.paths[index % len(self.paths)].name})"
        )

    def index_at(self, position: int) -> int:
        """Image index of global sample `position`: epoch e = position // n visits a seeded permutation."""
        n = len(self.paths)
        epoch = position // n
        if epoch not in self._orders:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._orders = {epoch: torch.randperm(n, generator=generator)}
        return int(self._orders[epoch][position % n])

    def __getitem__(self, position: int) -> tuple[Tensor, Tensor]:
        """Global sample position -> (views [2, 3, c, c] in [0, 1], superpixels [2, c, c]).

        Everything random is drawn from a generator seeded by (seed, position), so a sample is the
        same whichever process, worker or resumed run draws it.
        """
        i, image, superpixels = self._readable(self.index_at(position))
        rng = np.random.default_rng([self.seed, position])
        img = torch.from_numpy(image).permute(2, 0, 1).float() / 255.0
        sp = torch.from_numpy(superpixels.astype(np.int64))
        views = [augment_view(img, sp, self.data, rng) for _ in range(2)]
        return tuple(torch.stack(parts) for parts in zip(*views))


def collate_views(items: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """-> images [2B, 3, c, c], superpixels [2B, c, c], image_ids [2B], views [2B] (img0v0, img0v1, ...)."""
    images = torch.cat([it[0] for it in items])
    superpixels = torch.cat([it[1] for it in items])
    image_ids = torch.arange(len(items)).repeat_interleave(2)
    views = torch.arange(2).repeat(len(items))
    return images, superpixels, image_ids, views


def to_batch(
    collated: tuple[Tensor, Tensor, Tensor, Tensor], mean: Tensor, std: Tensor, device: torch.device
) -> Batch:
    """Normalise on the device (padding becomes 0 = the mean) and wrap as a `Batch`."""
    images, superpixels, image_ids, views = (t.to(device, non_blocking=True) for t in collated)
    normalised = (images - mean) / std
    pad = superpixels[:, None].expand_as(images) < 0
    return Batch(normalised.masked_fill(pad, 0.0), superpixels, image_ids, views)
