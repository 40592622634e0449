"""Metadata schema of indexed regions, and the conversion of one prediction into rows.

A prediction is duck-typed (see `hsg_core.types.Prediction`, never imported here): it has
``image_size`` (H, W) and ``levels``, finest first, each with ``label_map [H, W]``,
``embeddings [N, D]``, ``areas [N]``, ``boxes [N, 4]`` (x0, y0, x1, y1 exclusive) and
``parents [N]`` (-1 at the top level).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from .errors import InvalidPredictionError
from .ids import MAX_LEVELS, MAX_REGIONS, region_ids
from .rle import encode_label_map

METADATA_SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("image", pa.string()),  # path relative to the data root, "/" separated
        ("image_hash", pa.string()),  # sha256 of the file's bytes
        ("level", pa.int16()),
        ("region", pa.int32()),
        ("parent", pa.int32()),  # region id at level + 1 in the same image, -1 at the top
        ("area", pa.int64()),
        ("x0", pa.int32()),
        ("y0", pa.int32()),
        ("x1", pa.int32()),  # exclusive
        ("y1", pa.int32()),  # exclusive
        ("height", pa.int32()),  # image height
        ("width", pa.int32()),  # image width
        ("rle", pa.binary()),  # mask inside the box, see index.rle
    ]
)
VECTOR_COLUMN = "vector"
_NUMERIC = [f.name for f in METADATA_SCHEMA if f.name not in ("image", "image_hash", "rle")]


@dataclass
class RegionRows:
    """Metadata and vectors of every region (all levels) of one image.

    Attributes:
        image: relative path of the image.
        image_hash: sha256 hex digest of the file.
        numeric: numeric metadata columns, each [N].
        rle: N RLE byte strings.
        vectors: [N, D] float32, unit norm.
    """

    image: str
    image_hash: str
    numeric: dict[str, np.ndarray]
    rle: list[bytes]
    vectors: np.ndarray

    def __len__(self) -> int:
        return int(self.vectors.shape[0])


def prediction_rows(prediction: Any, image: str, image_hash: str, slot: int) -> RegionRows:
    """Rows of every region of every level of one image.

    Args:
        prediction: a `Prediction`-like object (see module docstring).
        image: relative path of the image, used in messages and stored in the rows.
        image_hash: sha256 hex digest of the file.
        slot: image slot used to form the region ids (see `index.ids`).

    Raises:
        InvalidPredictionError: the prediction breaks its contract; the message names `image`.
    """
    try:
        levels = list(prediction.levels)
        height, width = (int(v) for v in prediction.image_size)
    except (AttributeError, TypeError, ValueError) as err:
        raise InvalidPredictionError(f"{image}: not a prediction ({err})") from err
    if not 0 < len(levels) <= MAX_LEVELS:
        raise InvalidPredictionError(f"{image}: prediction has {len(levels)} levels")
    parts = []
    for number, level in enumerate(levels):
        coarser = levels[number + 1] if number + 1 < len(levels) else None
        parts.append(_level_rows(level, number, coarser, (height, width), image, slot))
    numeric = {name: np.concatenate([p[0][name] for p in parts]) for name in _NUMERIC}
    rle = [code for p in parts for code in p[1]]
    dims = {p[2].shape[1] for p in parts}
    if len(dims) != 1:
        raise InvalidPredictionError(
            f"{image}: levels have different embedding sizes {sorted(dims)}"
        )
    vectors = np.concatenate([p[2] for p in parts])
    return RegionRows(image, image_hash, numeric, rle, vectors)


def _level_rows(
    level: Any, number: int, coarser: Any, size: tuple[int, int], image: str, slot: int
) -> tuple[dict[str, np.ndarray], list[bytes], np.ndarray]:
    """Validated columns, RLE codes and unit vectors of one level (see `prediction_rows`)."""
    where = f"{image}: level {number}"
    label_map = np.asarray(level.label_map)
    embeddings = np.asarray(level.embeddings, dtype=np.float32)
    if embeddings.ndim != 2 or not 0 < embeddings.shape[0] < MAX_REGIONS:
        raise InvalidPredictionError(
            f"{where}: embeddings shape {embeddings.shape}, want [N, D], 0 < N < {MAX_REGIONS}"
        )
    count = embeddings.shape[0]
    if label_map.shape != size or not np.issubdtype(label_map.dtype, np.integer):
        raise InvalidPredictionError(
            f"{where}: label_map {label_map.dtype}{label_map.shape}, want int {size}"
        )
    if label_map.min() < 0 or label_map.max() >= count:
        raise InvalidPredictionError(f"{where}: label_map values outside [0, {count})")
    areas, boxes, parents = _region_arrays(level, count, where)
    _check_boxes(boxes, size, where)
    _check_parents(label_map, parents, coarser, where)
    vectors = _unit_vectors(embeddings, where)
    try:
        rle, found = encode_label_map(label_map, boxes)
    except ValueError as err:
        raise InvalidPredictionError(f"{where}: {err}") from err
    wrong = np.flatnonzero(found != areas)
    if wrong.size:
        region = int(wrong[0])
        raise InvalidPredictionError(
            f"{where}: region {region} has {found[region]} pixels, area says {areas[region]}"
        )
    regions = np.arange(count, dtype=np.int32)
    numeric = {
        "id": region_ids(number, slot, regions),
        "level": np.full(count, number, np.int16),
        "region": regions,
        "parent": parents,
        "area": areas,
        "x0": boxes[:, 0],
        "y0": boxes[:, 1],
        "x1": boxes[:, 2],
        "y1": boxes[:, 3],
        "height": np.full(count, size[0], np.int32),
        "width": np.full(count, size[1], np.int32),
    }
    return numeric, rle, vectors


def _region_arrays(level: Any, count: int, where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Areas [N] int64, boxes [N, 4] int32 and parents [N] int32 of a level, shape-checked."""
    areas = np.asarray(level.areas).astype(np.int64)
    boxes = np.asarray(level.boxes).astype(np.int32)
    parents = np.asarray(level.parents).astype(np.int32)
    if areas.shape != (count,) or boxes.shape != (count, 4) or parents.shape != (count,):
        raise InvalidPredictionError(
            f"{where}: areas {areas.shape}, boxes {boxes.shape}, parents {parents.shape} "
            f"do not match N={count}"
        )
    return areas, boxes, parents


def _check_boxes(boxes: np.ndarray, size: tuple[int, int], where: str) -> None:
    x0, y0, x1, y1 = boxes.T
    if (
        (x0 < 0).any()
        or (y0 < 0).any()
        or (x1 > size[1]).any()
        or (y1 > size[0]).any()
        or (x1 <= x0).any()
        or (y1 <= y0).any()
    ):
        raise InvalidPredictionError(
            f"{where}: a box lies outside the {size[1]}x{size[0]} image or is empty"
        )


def _check_parents(label_map: np.ndarray, parents: np.ndarray, coarser: Any, where: str) -> None:
    """Top level: every parent is -1. Otherwise parents index the coarser level and nest."""
    if coarser is None:
        if (parents != -1).any():
            raise InvalidPredictionError(f"{where}: top level must have parent -1 everywhere")
        return
    coarse_map = np.asarray(coarser.label_map)
    num_coarse = np.asarray(coarser.embeddings).shape[0]
    if parents.min() < 0 or parents.max() >= num_coarse:
        raise InvalidPredictionError(f"{where}: parents outside [0, {num_coarse})")
    if coarse_map.shape != label_map.shape or not np.array_equal(parents[label_map], coarse_map):
        raise InvalidPredictionError(f"{where}: regions do not nest in the next level's label map")


def _unit_vectors(embeddings: np.ndarray, where: str) -> np.ndarray:
    """[N, D] float32 rows rescaled to unit norm (inner product = cosine similarity)."""
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    if not np.isfinite(embeddings).all() or (norms <= 1e-12).any():
        raise InvalidPredictionError(f"{where}: embeddings contain NaN/inf or a zero vector")
    return np.ascontiguousarray(embeddings / norms, dtype=np.float32)


def rows_to_table(rows: list[RegionRows]) -> pa.Table:
    """Metadata table with a `vector` column (FixedSizeList<float32>[D]) for a list of images.

    Without rows, the empty metadata table (no vector column).
    """
    if not rows:
        return METADATA_SCHEMA.empty_table()
    counts = [len(r) for r in rows]
    columns = {
        name: pa.array(
            np.concatenate([r.numeric[name] for r in rows]), METADATA_SCHEMA.field(name).type
        )
        for name in _NUMERIC
    }
    columns["image"] = pa.array(np.repeat([r.image for r in rows], counts).tolist(), pa.string())
    columns["image_hash"] = pa.array(
        np.repeat([r.image_hash for r in rows], counts).tolist(), pa.string()
    )
    columns["rle"] = pa.array([code for r in rows for code in r.rle], pa.binary())
    vectors = np.concatenate([r.vectors for r in rows])
    table = pa.table([columns[f.name] for f in METADATA_SCHEMA], schema=METADATA_SCHEMA)
    return table.append_column(
        VECTOR_COLUMN,
        pa.FixedSizeListArray.from_arrays(
            pa.array(vectors.ravel(), pa.float32()), vectors.shape[1]
        ),
    )


def split_vectors(table: pa.Table) -> tuple[pa.Table, np.ndarray]:
    """Separates the `vector` column: (metadata table, [N, D] float32 vectors)."""
    column = table.column(VECTOR_COLUMN).combine_chunks()
    dim = column.type.list_size
    vectors = (
        column.flatten()
        .to_numpy(zero_copy_only=False)
        .reshape(-1, dim)
        .astype(np.float32, copy=False)
    )
    return table.drop_columns([VECTOR_COLUMN]), vectors
