"""Evaluation datasets: images with one or more ground-truth label maps.

Every reader has `ids`, `load(id) -> Sample`, iteration over samples, `validate()` (a cheap pass
that checks every file pair exists and agrees in size, so a bad file fails before hours of
inference) and three conventions:

* `void`: ground-truth label ignored everywhere (255 for VOC-style masks; None for BSDS);
* `background`: labels that are not foreground for NFCovering (0 for class masks; none for BSDS,
  where every human region counts);
* `num_classes`: number of semantic classes (None for BSDS, which has regions but no classes).

Layouts:

* BSDS500: `images/<split>/<id>.jpg`, `groundTruth/<split>/<id>.mat` (one label map per annotator,
  labels from 1), `ucm2/<split>/<id>.mat` (gPb-owt-ucm, val only).
* VOC-style: `JPEGImages/<id>.jpg` + `SegmentationClass/<id>.png` (palette PNG of class ids,
  255 = void); ids from `ImageSets/Segmentation/<split>.txt` when a split is given.
* Masks: `images/<stem>.<ext>` + `masks/<stem>.png` paired by file stem (single-channel class ids,
  255 = void).

A ground-truth region is the set of pixels sharing one label, connected or not: with class masks
(VOC `SegmentationClass`) regions are classes, so NFCovering measures class regions; give instance
maps (e.g. VOC `SegmentationObject` as a masks/ folder) to measure instances.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import scipy.io
from PIL import Image, UnidentifiedImageError

from ..images import IMAGE_SUFFIXES, TOO_LARGE, load_image, refuse_bomb

VOID = 255


class DatasetError(ValueError):
    """A dataset folder or file is missing or malformed; the message names the file."""


class Sample(NamedTuple):
    """One evaluation image. image: [H, W, 3] uint8 RGB; ground_truths: [H, W] int32 maps."""

    image: np.ndarray
    ground_truths: list[np.ndarray]
    id: str


def read_mask(path: Path) -> np.ndarray:
    """A single-channel label PNG (palette indices, 8 or 16 bit) -> [H, W] int32."""
    try:
        with Image.open(path) as img:
            refuse_bomb(img)  # the pixel limit of `load_image`, before decoding
            if img.mode not in ("P", "L", "I", "I;16", "I;16B", "I;16L"):
                raise DatasetError(
                    f"{path}: a label mask must be single-channel (palette or grey), not {img.mode}"
                )
            return np.asarray(img).astype(np.int32)
    except FileNotFoundError as err:
        raise DatasetError(f"{path}: no such mask file") from err
    except Image.DecompressionBombError as err:
        raise DatasetError(f"{path}: {TOO_LARGE}") from err
    except (UnidentifiedImageError, OSError) as err:
        raise DatasetError(f"{path}: not a readable PNG mask ({err})") from err


def image_size(path: Path) -> tuple[int, int]:
    """(H, W) from the file header, without decoding the pixels."""
    try:
        with Image.open(path) as img:
            return img.height, img.width
    except FileNotFoundError as err:
        raise DatasetError(f"{path}: no such file") from err
    except (UnidentifiedImageError, OSError) as err:
        raise DatasetError(f"{path}: not a readable image ({err})") from err


def check_same_size(image: np.ndarray, mask: np.ndarray, mask_path: Path) -> None:
    if image.shape[:2] != mask.shape:
        raise DatasetError(
            f"{mask_path}: mask is {mask.shape[1]}x{mask.shape[0]} but its image is "
            f"{image.shape[1]}x{image.shape[0]}"
        )


def require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DatasetError(f"{path}: no such folder ({what})")
    return path


class Dataset:
    """Base reader: subclasses set `ids` and implement `load`."""

    ids: list[str]
    void: int | None = VOID
    background: tuple[int, ...] = (0,)
    num_classes: int | None = None

    def load(self, sample_id: str) -> Sample:
        raise NotImplementedError

    def validate(self) -> None:
        """Check every file exists and pairs agree in size (headers only)."""

    def __len__(self) -> int:
        return len(self.ids)

    def __iter__(self) -> Iterator[Sample]:
        return (self.load(i) for i in self.ids)

    def limit(self, count: int | None) -> Dataset:
        """Keep the first `count` ids (all when None)."""
        if count is not None and count < 1:
            raise DatasetError(f"a limit must be at least 1 image, got {count}")
        if count is not None:
            self.ids = self.ids[:count]
        return self


class BSDSDataset(Dataset):
    """BSDS500 `split` ("train" | "val" | "test"): several human segmentations per image."""

    void = None
    background = ()

    def __init__(self, root: str | Path, split: str = "val") -> None:
        self.root, self.split = Path(root), split
        folder = require_dir(self.root / "images" / split, f"BSDS500 images of split {split!r}")
        self.ids = sorted(p.stem for p in folder.glob("*.jpg"))
        if not self.ids:
            raise DatasetError(f"{folder}: no .jpg images")

    def _path(self, kind: str, sample_id: str) -> Path:
        return self.root / kind / self.split / f"{sample_id}.mat"

    def validate(self) -> None:
        for sample_id in self.ids:
            if not self._path("groundTruth", sample_id).is_file():
                raise DatasetError(
                    f"{self._path('groundTruth', sample_id)}: no such ground-truth file"
                )

    def load(self, sample_id: str) -> Sample:
        image = load_image(self.root / "images" / self.split / f"{sample_id}.jpg")
        path = self._path("groundTruth", sample_id)
        cells = read_mat(path, "groundTruth")
        maps = [
            np.asarray(cells[0, i]["Segmentation"][0, 0], dtype=np.int32)
            for i in range(cells.shape[1])
        ]
        for gt in maps:
            check_same_size(image, gt, path)
        return Sample(image, maps, sample_id)

    def has_ucm2(self) -> bool:
        return (self.root / "ucm2" / self.split).is_dir()

    def ucm2_path(self, sample_id: str) -> Path:
        return self._path("ucm2", sample_id)

    def ucm2(self, sample_id: str) -> np.ndarray:
        """[2H+1, 2W+1] float64 gPb-owt-ucm ultrametric contour map of one image."""
        return np.asarray(read_mat(self.ucm2_path(sample_id), "ucm2"), dtype=np.float64)


def read_mat(path: Path, key: str) -> np.ndarray:
    """One variable of a MATLAB v5 file, with a one-line error naming the file."""
    try:
        return scipy.io.loadmat(str(path))[key]
    except FileNotFoundError as err:
        raise DatasetError(f"{path}: no such file") from err
    except KeyError as err:
        raise DatasetError(f"{path}: no variable {key!r} in this .mat file") from err
    except (ValueError, TypeError, OSError) as err:
        raise DatasetError(f"{path}: not a readable MATLAB file ({err})") from err


class PairedDataset(Dataset):
    """Images and single-channel class masks paired by id (VOC-style and masks layouts)."""

    def __init__(
        self,
        image_paths: dict[str, Path],
        mask_paths: dict[str, Path],
        num_classes: int | None,
        background: tuple[int, ...] = (0,),
    ) -> None:
        self.image_paths, self.mask_paths = image_paths, mask_paths
        self.ids = sorted(mask_paths)
        self.background = background
        self.num_classes = num_classes if num_classes is not None else self._infer_num_classes()

    def _infer_num_classes(self) -> int:
        """1 + the largest non-void label over all masks (reads every mask once)."""
        top = 0
        for sample_id in self.ids:
            labels = np.unique(read_mask(self.mask_paths[sample_id]))
            labels = labels[labels != VOID]
            top = max(top, int(labels.max()) + 1 if labels.size else 0)
        if top == 0:
            raise DatasetError(
                f"{self.mask_paths[self.ids[0]].parent}: the masks hold no class labels"
            )
        return top

    def validate(self) -> None:
        for sample_id in self.ids:
            mask_path = self.mask_paths[sample_id]
            (h, w), (mh, mw) = image_size(self.image_paths[sample_id]), image_size(mask_path)
            if (h, w) != (mh, mw):
                raise DatasetError(f"{mask_path}: mask is {mw}x{mh} but its image is {w}x{h}")

    def load(self, sample_id: str) -> Sample:
        image = load_image(self.image_paths[sample_id])
        mask = read_mask(self.mask_paths[sample_id])
        check_same_size(image, mask, self.mask_paths[sample_id])
        return Sample(image, [mask], sample_id)


def voc_dataset(
    root: str | Path, split: str | None = None, num_classes: int | None = 21
) -> PairedDataset:
    """VOC-style layout; ids from `ImageSets/Segmentation/<split>.txt`, else every mask."""
    root = Path(root)
    masks = require_dir(root / "SegmentationClass", "VOC-style class masks")
    images = require_dir(root / "JPEGImages", "VOC-style images")
    if split:
        list_file = root / "ImageSets" / "Segmentation" / f"{split}.txt"
        if not list_file.is_file():
            raise DatasetError(f"{list_file}: no such list file for split {split!r}")
        ids = [line.split()[0] for line in list_file.read_text().splitlines() if line.strip()]
    else:
        ids = sorted(p.stem for p in masks.glob("*.png"))
    if not ids:
        raise DatasetError(f"{masks}: no ids to evaluate")
    mask_paths = {i: masks / f"{i}.png" for i in ids}
    image_paths = {i: images / f"{i}.jpg" for i in ids}
    for i in ids:
        for path in (image_paths[i], mask_paths[i]):
            if not path.is_file():
                raise DatasetError(f"{path}: no such file (listed id {i!r})")
    return PairedDataset(image_paths, mask_paths, num_classes)


def masks_dataset(
    root: str | Path, num_classes: int | None = None, background: tuple[int, ...] = (0,)
) -> PairedDataset:
    """`images/` + `masks/` layout paired by file stem; every image needs a `<stem>.png` mask."""
    root = Path(root)
    images = require_dir(root / "images", "images of an images/ + masks/ layout")
    masks = require_dir(root / "masks", "masks of an images/ + masks/ layout")
    image_paths: dict[str, Path] = {}
    for path in sorted(images.iterdir()):
        if path.suffix.lower() in IMAGE_SUFFIXES:
            if path.stem in image_paths:
                raise DatasetError(f"{path}: two images share the stem {path.stem!r}")
            image_paths[path.stem] = path
    if not image_paths:
        raise DatasetError(f"{images}: no images")
    mask_paths = {stem: masks / f"{stem}.png" for stem in image_paths}
    for stem, path in mask_paths.items():
        if not path.is_file():
            raise DatasetError(f"{image_paths[stem]}: no mask for this image (expected {path})")
    return PairedDataset(image_paths, mask_paths, num_classes, background)


def open_labelled(
    root: str | Path, split: str | None = None, num_classes: int | None = None
) -> PairedDataset:
    """A class-labelled dataset in whichever layout `root` holds (VOC-style or images/ + masks/)."""
    root = Path(root)
    if (root / "SegmentationClass").is_dir():
        return voc_dataset(root, split, 21 if num_classes is None else num_classes)
    if (root / "masks").is_dir():
        if split:
            raise DatasetError(
                f"{root}: an images/ + masks/ layout has no splits (got --split {split})"
            )
        return masks_dataset(root, num_classes)
    raise DatasetError(
        f"{root}: neither a VOC-style folder (JPEGImages/, SegmentationClass/) "
        "nor an images/ + masks/ folder"
    )
