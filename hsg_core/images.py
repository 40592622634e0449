"""Reading images from disk into HxWx3 uint8 RGB, with one clear error per bad file.

Rules (documented in the README): EXIF orientation is applied; grayscale, palette, RGBA (composited
on white), CMYK and 16-bit images are converted to 8-bit RGB; animated GIF/WebP give their first
frame; images above `MAX_PIXELS` are refused as decompression bombs, from the size in the file's
header, before any pixel is decoded; images whose longer side exceeds `max_side` are downscaled
(area filter) so the longer side equals `max_side`.

Which files are images, and which entries of a folder are listed, is `hsg_files`'s rule (shared
with `index`): a symbolic link that leads out of the folder is never listed.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from hsg_files import IMAGE_SUFFIXES, file_sha256, list_image_files

__all__ = [
    "IMAGE_SUFFIXES",
    "MAX_PIXELS",
    "ImageReadError",
    "check_rgb",
    "downscale_to",
    "file_sha256",
    "list_images",
    "load_image",
]
MAX_PIXELS = 100_000_000  # 10^8 pixels (e.g. 10000 x 10000); larger files are refused unread
LOG = logging.getLogger(__name__)


class ImageReadError(ValueError):
    """An image file cannot be turned into an RGB array; the message names the file and why."""


def _to_rgb8(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8))
    if img.mode == "F":
        arr = np.nan_to_num(np.asarray(img, dtype=np.float64))
        span = max(arr.max() - arr.min(), 1e-12)
        img = Image.fromarray(((arr - arr.min()) / span * 255.0 + 0.5).astype(np.uint8))
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB")


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:200]


TOO_LARGE = f"too large (more than {MAX_PIXELS:,} pixels); downscale it first"


def refuse_bomb(img: Image.Image) -> None:
    """Raise DecompressionBombError when the opened (not yet decoded) image declares more than
    `MAX_PIXELS` pixels. PIL's own check only warns below twice its limit, and the warning
    filter that turns it into an error is process-wide (another thread may reset it); this
    check is neither."""
    width, height = img.size
    if width * height > MAX_PIXELS:
        raise Image.DecompressionBombError(f"{width}x{height} pixels")


def downscale_to(image: np.ndarray, max_side: int) -> np.ndarray:
    """[H, W, 3] uint8 -> same, longer side <= max_side (area-averaging), aspect kept."""
    h, w = image.shape[:2]
    if max_side <= 0 or max(h, w) <= max_side:
        return image
    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.array(Image.fromarray(image).resize(size, Image.Resampling.BOX))


def load_image(path: str | os.PathLike, max_side: int = 0) -> np.ndarray:
    """Read `path` as [H, W, 3] uint8 RGB (rules in the module docstring).

    Raises:
        ImageReadError: missing, empty, not a regular file, truncated, not an image, or too large;
            the one-line message names the file.
    """
    path = Path(path)
    try:
        info = path.stat()
        if stat.S_ISDIR(info.st_mode):
            raise ImageReadError(f"{path}: is a folder, not an image")
        if not stat.S_ISREG(info.st_mode):
            raise ImageReadError(f"{path}: not a regular file (a pipe, socket or device)")
        if info.st_size == 0:
            raise ImageReadError(f"{path}: empty file (0 bytes)")
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            Image.MAX_IMAGE_PIXELS = MAX_PIXELS
            with Image.open(path) as img:  # reads the header only
                refuse_bomb(img)
                img.seek(0)
                refuse_bomb(img)
                img = ImageOps.exif_transpose(img) or img
                rgb = np.array(_to_rgb8(img))  # writable copy
    except ImageReadError:
        raise
    except FileNotFoundError as err:
        raise ImageReadError(f"{path}: no such file") from err
    except PermissionError as err:
        raise ImageReadError(f"{path}: not readable (permission denied)") from err
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageReadError(f"{path}: {TOO_LARGE}") from err
    except UnidentifiedImageError as err:
        raise ImageReadError(f"{path}: not an image file (unrecognised format)") from err
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise ImageReadError(f"{path}: symbolic link loop") from err
        raise ImageReadError(f"{path}: corrupt or truncated image ({_first_line(err)})") from err
    except (SyntaxError, ValueError) as err:
        raise ImageReadError(f"{path}: corrupt or truncated image ({_first_line(err)})") from err
    if rgb.ndim != 3 or min(rgb.shape[:2]) < 1:
        raise ImageReadError(f"{path}: decoded to an unusable shape {rgb.shape}")
    return downscale_to(np.ascontiguousarray(rgb), max_side)


def check_rgb(image: np.ndarray, what: str = "image") -> np.ndarray:
    """Validate an in-memory image: [H, W, 3] uint8 (grayscale [H, W] and RGBA are converted)."""
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"{what}: expected an HxWx3 RGB array, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        raise ValueError(f"{what}: expected uint8 pixels, got {arr.dtype}")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"{what}: empty image {arr.shape}")
    return np.ascontiguousarray(arr[..., :3])


def list_images(root: str | os.PathLike) -> list[Path]:
    """Every image file under `root` (recursive, sorted; `hsg_files.list_image_files`'s rules: a
    link that leads out of `root` is skipped with a warning, each real folder is visited once).

    Raises:
        FileNotFoundError: `root` is not a folder.
    """
    root = Path(root)
    return [root / rel for rel in list_image_files(root, on_outside=_warn_outside(root))]


def _warn_outside(root: Path) -> Callable[[str], None]:
    """Logs an entry skipped because it is a link that leads out of `root`."""

    def warn(rel: str) -> None:
        LOG.warning("%s: skipped, a link that leads out of %s", rel, root)

    return warn
