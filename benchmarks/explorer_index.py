"""Synthetic indexes of N regions over real image files, for the explorer benchmark (bench_app.py).

bench_index's synthetic regions point at no file: enough to time searches, not to show hits. Here
every image slot is a JPEG on disk, painted one colour per level-0 region of one of a few synthetic
predictions (voronoi layout, bench_index's REGIONS_PER_LEVEL at its IMAGE_SIZE), and its index rows
carry that prediction's boxes and RLE masks: the explorer's gallery loads, crops and outlines each
hit exactly as on a real index. Vectors are fresh clustered 128-d unit vectors, as in bench_index.

    index_dir, commit_seconds = explorer_index(work, 1_000_000, "Flat")   # 10^4 JPEGs, ~25 KB each
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.bench_index import DIM, IMAGE_SIZE, REGIONS_PER_LEVEL, image_name, synthetic_index
from hsg_files import atomic_write_text
from index.records import RegionRows, prediction_rows
from index.synthetic import cluster_centers, synthetic_prediction

TEMPLATES = 16  # distinct images (and region layouts); slot s uses template s % TEMPLATES
JPEG_QUALITY = 90
IMAGES_DONE = "images.json"  # written last, so a folder without it is incomplete


def templates(count: int = TEMPLATES) -> list[tuple[RegionRows, np.ndarray]]:
    """`count` pairs (region rows of a synthetic prediction as slot 0, [H, W, 3] uint8 image
    painted one colour per level-0 region)."""
    out = []
    for seed in range(count):
        rng = np.random.default_rng(seed)
        prediction = synthetic_prediction(
            rng,
            image_size=IMAGE_SIZE,
            regions_per_level=REGIONS_PER_LEVEL,
            centers=cluster_centers(64, DIM),
            layout="voronoi",
        )
        colours = rng.integers(40, 216, (REGIONS_PER_LEVEL[0], 3), dtype=np.uint8)
        image = colours[prediction.levels[0].label_map]
        out.append((prediction_rows(prediction, "", "0" * 64, 0), image))
    return out


def write_images(folder: Path, num_images: int, images: list[np.ndarray]) -> None:
    """JPEGs `image_name(s)` for slots s < num_images, slot s showing images[s % len(images)]."""
    folder.mkdir(parents=True, exist_ok=True)
    encoded = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "JPEG", quality=JPEG_QUALITY)
        encoded.append(buffer.getvalue())
    for slot in range(num_images):
        (folder / image_name(slot)).write_bytes(encoded[slot % len(encoded)])
    atomic_write_text(folder / IMAGES_DONE, json.dumps(_images_stamp(num_images, len(images))))


def _images_stamp(num_images: int, num_templates: int) -> dict:
    return {"images": num_images, "templates": num_templates, "size": list(IMAGE_SIZE)}


def _images_ready(folder: Path, num_images: int, num_templates: int) -> bool:
    done = folder / IMAGES_DONE
    stamp = _images_stamp(num_images, num_templates)
    return done.exists() and json.loads(done.read_text()) == stamp


def _index_ready(out: Path, num_regions: int, data_root: Path) -> bool:
    """A committed index of `num_regions` regions over `data_root` is in `out`."""
    manifest = out / "manifest.json"
    if not manifest.exists():
        return False
    content = json.loads(manifest.read_text())
    return content["counts"]["regions"] == num_regions and content["data_root"] == str(data_root)


def explorer_index(
    work: Path, num_regions: int, factory: str, num_templates: int = TEMPLATES
) -> tuple[Path, float | None]:
    """The index folder `work`/n<N>_<factory> over the images in `work`/images, built unless a
    complete one is there already.

    Args:
        work: folder of the images and indexes (kept, so later runs reuse them).
        num_regions: regions in all, sum(REGIONS_PER_LEVEL) = 100 per image.
        factory: faiss factory ("Flat", "IVF1024,Flat", ...).
        num_templates: distinct images and region layouts.

    Returns:
        (index folder, commit seconds, or None when the index was reused).
    """
    data = (Path(work) / "images").resolve()
    num_images = num_regions // sum(REGIONS_PER_LEVEL)
    out = Path(work) / f"n{num_regions}_{factory.replace(',', '_')}"
    images_ready = _images_ready(data, num_images, num_templates)
    if images_ready and _index_ready(out, num_regions, data):
        return out, None
    pairs = templates(num_templates)
    if not images_ready:
        write_images(data, num_images, [image for _, image in pairs])
    shutil.rmtree(out, ignore_errors=True)  # stale, or a build killed before its commit
    rows = [template for template, _ in pairs]
    return out, synthetic_index(out, num_regions, factory, templates=rows, data_root=data)
