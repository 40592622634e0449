"""One export format for a segmented image, shared by `hsg segment` and the explorer's download.

For an image `<stem>` and every level l (0 = finest):
- `<stem>_level<l>_labels.png`: uint16 region ids (ids 0..N_l-1, as `Prediction.levels[l]`);
- `<stem>_level<l>_color.png`: the regions over the image in the hierarchy's colours
  (`viz.hierarchy_colours`: a child a shade of its parent), region boundaries in white;
- `<stem>_hierarchy.json`: the hierarchy (`Prediction.to_json`: per level areas, boxes, parents).
`hsg segment` writes these files into a folder; the explorer zips the same files.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from hsg_core.types import Prediction
from hsg_core.viz import hierarchy_colours, overlay_regions
from hsg_files import atomic_write, atomic_write_path


def png_bytes(array: np.ndarray) -> bytes:
    """[H, W] uint8/uint16 or [H, W, 3] uint8 as PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def segmentation_files(prediction: Prediction, image: np.ndarray, stem: str) -> dict[str, bytes]:
    """{file name: content} of the export format (module docstring) for one image.

    Args:
        prediction: the image's hierarchy, label maps [H, W].
        image: [H, W, 3] uint8, the image the prediction was made on.
        stem: the file names' prefix (the image's name without suffix).
    """
    if image.shape[:2] != tuple(prediction.image_size):
        raise ValueError(
            f"{stem}: image is {image.shape[1]}x{image.shape[0]}, its hierarchy "
            f"{prediction.image_size[1]}x{prediction.image_size[0]}"
        )
    colours = hierarchy_colours([level.parents for level in prediction.levels])
    files: dict[str, bytes] = {}
    for lv, level in enumerate(prediction.levels):
        overlay = overlay_regions(image, level.label_map, colours=colours[lv])
        files[f"{stem}_level{lv}_color.png"] = png_bytes(overlay)
        files[f"{stem}_level{lv}_labels.png"] = png_bytes(level.label_map.astype(np.uint16))
    files[f"{stem}_hierarchy.json"] = prediction.to_json().encode()
    return files


def write_segmentation(
    prediction: Prediction, image: np.ndarray, stem: str, out: Path
) -> list[Path]:
    """The export format's files written into folder `out` (each through a temp file and a
    rename: never half written); their paths."""
    paths = []
    for name, data in segmentation_files(prediction, image, stem).items():
        path = Path(out) / name
        atomic_write(path, lambda handle, data=data: handle.write(data))
        paths.append(path)
    return paths


def segmentation_zip(prediction: Prediction, image: np.ndarray, stem: str, path: Path) -> Path:
    """The export format's files in one zip at `path` (written to a temp file, then renamed)."""

    def write(tmp: Path) -> None:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, data in segmentation_files(prediction, image, stem).items():
                archive.writestr(name, data)

    atomic_write_path(Path(path), write)
    return Path(path)
