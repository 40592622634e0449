"""Augmented copies of images with a known geometry, for the label-free retrieval evaluation.

A copy is the original flipped (optionally), resized, cropped, then colour-jittered; the colour
jitter moves no pixel, so `CopyTransform` maps any original point to the copy's frame and back.
Coordinates are continuous (x, y) with pixel (row i, column j) covering [j, j + 1) x [i, i + 1),
i.e. its centre at (j + 0.5, i + 0.5), the convention of PIL's resize.

`prepare_copies` lays out a *work folder* that `index.build_index` can index as a whole (the images
are hard links, not a symbolic link to the data folder: an index lists nothing through a link that
leads out of its folder, see `hsg_files.list_image_files`):

    work/images/<rel>      every image of the data folder, hard-linked (originals and distractors)
    work/copies/<rel>.png  one copy per chosen original (lossless, so the pixels are exact)
    work/retrieval_copies.json   seed, originals, their hashes and every transform
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from .dataset import file_digest, list_images
from .io import write_json

LOG = logging.getLogger(__name__)

ImageLoader = Callable[[Path], np.ndarray]  # path -> [H, W, 3] uint8 RGB, as the model sees it

MANIFEST = "retrieval_copies.json"
FORMAT = 1
FLIP_PROBABILITY = 0.5  # left-right mirror
SCALE_RANGE = (0.75, 1.25)  # resize factor of the (flipped) original
CROP_SIDE_RANGE = (0.7, 1.0)  # kept fraction of the resized width, and independently height
JITTER_RANGE = (0.8, 1.2)  # brightness, contrast and saturation factors
HUE_RANGE = (-0.05, 0.05)  # hue shift, in turns of the colour wheel


@dataclass(frozen=True)
class CopyTransform:
    """Flip, then resize, then crop; then colour jitter (which moves no pixel).

    Attributes:
        source_size: (H, W) of the original.
        flip: mirror left-right first.
        scaled_size: (H', W') the flipped original is resized to.
        crop: (x0, y0, x1, y1) kept from the resized image, x1/y1 exclusive; the copy's frame.
        brightness, contrast, saturation: PIL ImageEnhance factors (1 = unchanged).
        hue: hue shift in turns (0 = unchanged).
    """

    source_size: tuple[int, int]
    flip: bool
    scaled_size: tuple[int, int]
    crop: tuple[int, int, int, int]
    brightness: float = 1.0
    contrast: float = 1.0
    saturation: float = 1.0
    hue: float = 0.0

    @property
    def copy_size(self) -> tuple[int, int]:
        """(h, w) of the copy."""
        x0, y0, x1, y1 = self.crop
        return y1 - y0, x1 - x0

    @property
    def _scale(self) -> tuple[float, float]:
        """(sx, sy): resized over original width and height."""
        return self.scaled_size[1] / self.source_size[1], self.scaled_size[0] / self.source_size[0]

    def to_copy(self, xy: np.ndarray) -> np.ndarray:
        """[N, 2] original (x, y) -> [N, 2] copy (x, y) (outside [0, w) x [0, h) = cropped out)."""
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        x = self.source_size[1] - xy[:, 0] if self.flip else xy[:, 0]
        sx, sy = self._scale
        return np.stack([x * sx - self.crop[0], xy[:, 1] * sy - self.crop[1]], axis=1)

    def to_original(self, xy: np.ndarray) -> np.ndarray:
        """[N, 2] copy (x, y) -> [N, 2] original (x, y); the inverse of `to_copy`."""
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        sx, sy = self._scale
        x = (xy[:, 0] + self.crop[0]) / sx
        x = self.source_size[1] - x if self.flip else x
        return np.stack([x, (xy[:, 1] + self.crop[1]) / sy], axis=1)

    def warp_labels(self, label_map: np.ndarray) -> np.ndarray:
        """[H, W] original labels -> [h, w] labels in the copy's frame (nearest: each copy pixel
        takes the label of the original pixel under its centre)."""
        if tuple(label_map.shape[:2]) != tuple(self.source_size):
            raise ValueError(f"label map {label_map.shape[:2]} is not {self.source_size}")
        h, w = self.copy_size
        cols = self.to_original(np.stack([np.arange(w) + 0.5, np.full(w, 0.5)], axis=1))[:, 0]
        rows = self.to_original(np.stack([np.full(h, 0.5), np.arange(h) + 0.5], axis=1))[:, 1]
        cols = np.clip(np.floor(cols).astype(np.int64), 0, self.source_size[1] - 1)
        rows = np.clip(np.floor(rows).astype(np.int64), 0, self.source_size[0] - 1)
        return label_map[np.ix_(rows, cols)]

    def inside_copy(self) -> np.ndarray:
        """[H, W] bool: original pixels whose centre lands inside the copy."""
        height, width = self.source_size
        h, w = self.copy_size
        x = self.to_copy(np.stack([np.arange(width) + 0.5, np.full(width, 0.5)], axis=1))[:, 0]
        y = self.to_copy(np.stack([np.full(height, 0.5), np.arange(height) + 0.5], axis=1))[:, 1]
        return np.outer((y >= 0) & (y < h), (x >= 0) & (x < w))

    def apply(self, image: np.ndarray) -> np.ndarray:
        """[H, W, 3] uint8 original -> [h, w, 3] uint8 copy."""
        if tuple(image.shape[:2]) != tuple(self.source_size):
            raise ValueError(f"image {image.shape[:2]} is not {self.source_size}")
        img = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).convert("RGB")
        if self.flip:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        img = img.resize(self.scaled_size[::-1], Image.Resampling.BILINEAR).crop(self.crop)
        img = ImageEnhance.Brightness(img).enhance(self.brightness)
        img = ImageEnhance.Contrast(img).enhance(self.contrast)
        img = ImageEnhance.Color(img).enhance(self.saturation)
        hsv = np.array(img.convert("HSV"))
        hsv[..., 0] = (hsv[..., 0].astype(np.int64) + round(self.hue * 256)) % 256
        return np.array(Image.fromarray(hsv, "HSV").convert("RGB"))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> CopyTransform:
        return cls(
            **{
                **data,
                "source_size": tuple(data["source_size"]),
                "scaled_size": tuple(data["scaled_size"]),
                "crop": tuple(data["crop"]),
            }
        )


def sample_transform(rng: np.random.Generator, size: tuple[int, int]) -> CopyTransform:
    """A random flip/scale/crop/jitter for an image of `size` (H, W) (ranges: module constants)."""
    height, width = size
    scale = rng.uniform(*SCALE_RANGE)
    scaled = (max(1, round(height * scale)), max(1, round(width * scale)))
    keep_w, keep_h = rng.uniform(*CROP_SIDE_RANGE, size=2)
    crop_w, crop_h = max(1, round(scaled[1] * keep_w)), max(1, round(scaled[0] * keep_h))
    x0 = int(rng.integers(0, scaled[1] - crop_w + 1))
    y0 = int(rng.integers(0, scaled[0] - crop_h + 1))
    brightness, contrast, saturation = (float(v) for v in rng.uniform(*JITTER_RANGE, size=3))
    return CopyTransform(
        source_size=(int(height), int(width)),
        flip=bool(rng.random() < FLIP_PROBABILITY),
        scaled_size=scaled,
        crop=(x0, y0, x0 + crop_w, y0 + crop_h),
        brightness=brightness,
        contrast=contrast,
        saturation=saturation,
        hue=float(rng.uniform(*HUE_RANGE)),
    )


@dataclass(frozen=True)
class CopyPair:
    """An original and its copy, as image names of the work folder (and of its index)."""

    original: str
    copy: str
    transform: CopyTransform


def prepare_copies(
    data: Path, work: Path, copies: int, seed: int, load: ImageLoader
) -> list[CopyPair]:
    """Lays out the work folder (see module docstring) with copies of `copies` seeded originals.

    A work folder already prepared with the same data folder, seed, count and unchanged originals
    is reused as is, so an index built over it stays valid.

    Args:
        data: image folder (recursive); every image not chosen serves as a distractor.
        work: work folder, created; it must not lie inside `data`.
        copies: number of originals to copy.
        seed: chooses the originals and their transforms.
        load: image reader (the model's, so that the frames match).

    Raises:
        FileNotFoundError: `data` is not a folder.
        ValueError: no images, fewer images than `copies`, or `work` inside `data`.
    """
    data, work = Path(os.path.abspath(data)), Path(os.path.abspath(work))
    images = list_images(data)
    if work.resolve().is_relative_to(data.resolve()):
        raise ValueError(f"{work}: the work folder lies inside the data folder {data}")
    if copies < 1:
        raise ValueError(f"copies must be >= 1, got {copies}")
    if not images:
        raise ValueError(f"{data}: no image files found")
    if len(images) < copies:
        raise ValueError(f"{data}: {len(images)} image(s), fewer than the {copies} copies asked")
    picks = np.random.default_rng(seed).choice(len(images), copies, replace=False)
    chosen = sorted(images[i] for i in picks)
    hashes = [file_digest(data / rel) for rel in chosen]
    wanted = {"format": FORMAT, "data": str(data), "seed": int(seed), "copies": int(copies)}
    _mirror_data(data, images, work / "images")  # every run: distractors follow the data folder
    if _is_prepared(work, wanted, hashes):
        LOG.info("reusing the %d copies in %s", copies, work)
        return load_pairs(work)
    return _pairs(_write_copies(data, work, chosen, hashes, wanted, seed, load))


def _is_prepared(work: Path, wanted: dict, hashes: list[str]) -> bool:
    """True when `work` holds the copies `wanted` asks for, made from originals with `hashes`."""
    try:
        previous = read_copies(work)
    except (FileNotFoundError, ValueError):
        return False
    pairs = previous.get("pairs", [])
    return (
        all(previous.get(key) == value for key, value in wanted.items())
        and [p.get("source_hash") for p in pairs] == hashes
        and all((work / p["copy"]).is_file() for p in pairs)
    )


def read_copies(work: Path) -> dict:
    """The manifest of a prepared work folder.

    Raises:
        FileNotFoundError: no manifest (not a prepared work folder).
        ValueError: the manifest is not valid JSON.
    """
    path = Path(work) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no copies manifest (not a prepared work folder)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a valid copies manifest ({err})") from err


def load_pairs(work: Path) -> list[CopyPair]:
    """The (original, copy, transform) pairs of a prepared work folder."""
    return _pairs(read_copies(work))


def _pairs(manifest: dict) -> list[CopyPair]:
    return [
        CopyPair(p["original"], p["copy"], CopyTransform.from_dict(p["transform"]))
        for p in manifest["pairs"]
    ]


def _write_copies(
    data: Path,
    work: Path,
    chosen: list[str],
    hashes: list[str],
    header: dict,
    seed: int,
    load: ImageLoader,
) -> dict:
    """Writes every copy, then the manifest (last: it marks completion)."""
    work.mkdir(parents=True, exist_ok=True)
    (work / MANIFEST).unlink(missing_ok=True)
    shutil.rmtree(work / "copies", ignore_errors=True)
    rng = np.random.default_rng([seed, 1])  # a stream apart from the choice of originals
    pairs = []
    for rel, digest in zip(chosen, hashes):
        image = load(data / rel)
        transform = sample_transform(rng, image.shape[:2])
        target = work / "copies" / f"{rel}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(transform.apply(image)).save(target, format="PNG")
        pairs.append(
            {
                "original": f"images/{rel}",
                "copy": f"copies/{rel}.png",
                "source_hash": digest,
                "transform": transform.to_dict(),
            }
        )
    manifest = {**header, "pairs": pairs}
    write_json(work / MANIFEST, manifest)
    LOG.info("wrote %d copies into %s", len(pairs), work / "copies")
    return manifest


def _mirror_data(data: Path, images: list[str], mirror: Path) -> None:
    """`mirror` holds `images` of `data` at the same relative paths, as hard links (no disk used),
    or copies where hard links fail (another file system); anything else in `mirror` is removed."""
    if mirror.is_symlink() or mirror.is_file():  # a work folder of an older layout: a symbolic link
        mirror.unlink()
    wanted = set(images)
    for rel in list_images(mirror) if mirror.is_dir() else []:
        if rel not in wanted or not _same_file(mirror / rel, data / rel):
            (mirror / rel).unlink()
    copied = 0
    for rel in images:
        target = mirror / rel
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(data / rel, target)
        except OSError:
            shutil.copy2(data / rel, target)
            copied += 1
    if copied:
        LOG.warning("copied %d image(s) of %s into %s (hard links failed)", copied, data, mirror)


def _same_file(mirrored: Path, source: Path) -> bool:
    """True when `mirrored` is `source` (a hard link), or a copy of it of the same size and time."""
    a, b = mirrored.stat(), source.stat()
    same_inode = (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
    return same_inode or (a.st_size, a.st_mtime_ns) == (b.st_size, b.st_mtime_ns)
