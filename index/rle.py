"""Compact run-length encoding of region masks, decodable with numpy alone.

A region's mask is stored inside its bounding box only: the box crop is read row-major and
cut into alternating runs of outside/inside pixels, the first run being "outside" (possibly of
length 0). Run lengths are written as unsigned LEB128 varints (7 bits per byte, high bit =
"more bytes follow"), so most runs take one or two bytes. The box and the image size travel
in the metadata row next to the RLE bytes.
"""

from __future__ import annotations

import numpy as np

_MAX_VARINT_BYTES = 10  # enough for any uint64


def encode_varints(values: np.ndarray) -> bytes:
    """Unsigned LEB128 encoding of non-negative integers.

    Args:
        values: [N] non-negative integers.

    Returns:
        The concatenated varints.
    """
    values = np.asarray(values)
    if values.size and values.min() < 0:
        raise ValueError("varints encode non-negative integers only")
    values = values.astype(np.uint64)
    num_bytes = _varint_sizes(values)
    starts = np.cumsum(num_bytes) - num_bytes
    out = np.zeros(int(num_bytes.sum()), dtype=np.uint8)
    for position in range(int(num_bytes.max(initial=0))):
        chosen = num_bytes > position
        byte = (values[chosen] >> np.uint64(7 * position)) & np.uint64(0x7F)
        more = num_bytes[chosen] > position + 1
        out[starts[chosen] + position] = byte.astype(np.uint8) | (more.astype(np.uint8) << 7)
    return out.tobytes()


def decode_varints(data: bytes) -> np.ndarray:
    """Inverse of `encode_varints`.

    Returns:
        [N] int64 values.

    Raises:
        ValueError: the bytes end in the middle of a varint.
    """
    raw = np.frombuffer(data, dtype=np.uint8)
    if raw.size == 0:
        return np.zeros(0, dtype=np.int64)
    is_last = raw < 0x80
    if not is_last[-1]:
        raise ValueError("RLE bytes end inside a varint (truncated or corrupt)")
    group = np.concatenate([[0], np.cumsum(is_last)[:-1]])
    group_start = np.flatnonzero(np.concatenate([[True], is_last[:-1]]))
    position = np.arange(raw.size) - group_start[group]
    if position.max() >= _MAX_VARINT_BYTES:
        raise ValueError("RLE varint longer than 10 bytes (corrupt)")
    parts = (raw & 0x7F).astype(np.uint64) << (7 * position).astype(np.uint64)
    values = np.zeros(int(is_last.sum()), dtype=np.uint64)
    np.add.at(values, group, parts)
    return values.astype(np.int64)


def encode_mask(mask: np.ndarray) -> bytes:
    """RLE of a 2-D boolean mask, row-major, runs alternating outside/inside starting outside.

    Args:
        mask: [h, w] bool.
    """
    flat = np.asarray(mask, dtype=bool).ravel()
    if flat.size == 0:
        return b""
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    edges = np.concatenate([[0], changes, [flat.size]])
    runs = np.diff(edges)
    if flat[0]:
        runs = np.concatenate([[0], runs])
    return encode_varints(runs)


def decode_mask(data: bytes, shape: tuple[int, int]) -> np.ndarray:
    """Inverse of `encode_mask`.

    Args:
        data: RLE bytes.
        shape: (h, w) of the encoded mask.

    Returns:
        [h, w] bool.

    Raises:
        ValueError: the runs do not add up to h * w pixels.
    """
    runs = decode_varints(data)
    height, width = int(shape[0]), int(shape[1])
    if int(runs.sum()) != height * width:
        raise ValueError(
            f"RLE covers {int(runs.sum())} pixels, expected {height}x{width} (corrupt)"
        )
    inside = (np.arange(runs.size) % 2).astype(bool)
    return np.repeat(inside, runs).reshape(height, width)


def encode_region(
    label_map: np.ndarray, region: int, box: tuple[int, int, int, int]
) -> tuple[bytes, int]:
    """RLE of one region inside its box, and the region's pixel count found there.

    Args:
        label_map: [H, W] integer region ids.
        region: the region to encode.
        box: (x0, y0, x1, y1), x1/y1 exclusive.

    Returns:
        (RLE bytes, number of pixels of `region` inside the box).
    """
    x0, y0, x1, y1 = (int(v) for v in box)
    crop = label_map[y0:y1, x0:x1] == region
    return encode_mask(crop), int(np.count_nonzero(crop))


def encode_label_map(label_map: np.ndarray, boxes: np.ndarray) -> tuple[list[bytes], np.ndarray]:
    """`encode_region` for every region of a label map at once (vectorised over the whole map).

    Args:
        label_map: [H, W] integer region ids 0..N-1.
        boxes: [N, 4] (x0, y0, x1, y1), x1/y1 exclusive.

    Returns:
        (N RLE byte strings, identical to `encode_region`'s, [N] int64 pixel counts per region).

    Raises:
        ValueError: a region has pixels outside its box.
    """
    height, width = label_map.shape
    count = boxes.shape[0]
    starts = np.flatnonzero(
        np.concatenate([np.ones((height, 1), bool), label_map[:, 1:] != label_map[:, :-1]], axis=1)
    )  # flat start of every horizontal segment
    ends = np.append(
        starts[1:], height * width
    )  # each row begins a new segment, so the next start ends it
    labels = label_map.ravel()[starts].astype(np.int64)
    order = np.argsort(labels, kind="stable")  # by region, then in raster order
    starts, ends, labels = starts[order], ends[order], labels[order]
    rows, cols = np.divmod(starts, width)
    x0, y0, x1, y1 = (boxes[labels, i].astype(np.int64) for i in range(4))
    if ((cols < x0) | (cols + ends - starts > x1) | (rows < y0) | (rows >= y1)).any():
        bad = int(labels[(cols < x0) | (cols + ends - starts > x1) | (rows < y0) | (rows >= y1)][0])
        raise ValueError(
            f"region {bad} has pixels outside its box {tuple(int(v) for v in boxes[bad])}"
        )
    crop_start = (rows - y0) * (x1 - x0) + (cols - x0)
    crop_end = crop_start + (ends - starts)
    # fuse segments that continue each other in the box crop (e.g. full-width rows)
    new_run = np.ones(labels.size, bool)
    new_run[1:] = (labels[1:] != labels[:-1]) | (crop_start[1:] != crop_end[:-1])
    first = np.flatnonzero(new_run)
    last = np.append(first[1:], labels.size) - 1
    run_label, run_start, run_end = labels[first], crop_start[first], crop_end[last]
    areas = np.bincount(run_label, weights=run_end - run_start, minlength=count).astype(np.int64)
    return _runs_to_codes(run_label, run_start, run_end, boxes, count), areas


def _runs_to_codes(
    run_label: np.ndarray, run_start: np.ndarray, run_end: np.ndarray, boxes: np.ndarray, count: int
) -> list[bytes]:
    """Per-region varint codes of inside-runs sorted by (region, start), in box-crop coordinates."""
    box_area = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).astype(np.int64)
    is_first = np.ones(run_label.size, bool)
    is_first[1:] = run_label[1:] != run_label[:-1]
    previous_end = np.where(is_first, 0, np.roll(run_end, 1))
    is_last = np.append(is_first[1:], True)
    trailing = np.where(is_last, box_area[run_label] - run_end, 0)
    # per run: [gap before, length] (+ [trailing gap] after a region's last run when > 0)
    values = np.stack([run_start - previous_end, run_end - run_start, trailing], axis=1).ravel()
    keep = np.ones((run_label.size, 3), bool)
    keep[:, 2] = trailing > 0
    keep = keep.ravel()
    owners = np.repeat(run_label, 3)[keep]
    values = values[keep]
    code = np.frombuffer(encode_varints(values), dtype=np.uint8)
    byte_ends = np.cumsum(_varint_sizes(values))
    value_ends = np.searchsorted(owners, np.arange(count), side="right")
    region_byte_ends = np.where(value_ends > 0, byte_ends[np.maximum(value_ends - 1, 0)], 0)
    region_byte_starts = np.concatenate([[0], region_byte_ends[:-1]])
    return [code[a:b].tobytes() for a, b in zip(region_byte_starts, region_byte_ends)]


def _varint_sizes(values: np.ndarray) -> np.ndarray:
    """[N] bytes taken by each varint of `values`."""
    values = np.asarray(values).astype(np.uint64)
    sizes = np.ones(values.shape, dtype=np.int64)
    for shift in range(7, 64, 7):
        sizes += values >= (np.uint64(1) << np.uint64(shift))
    return sizes


def decode_region(
    data: bytes, box: tuple[int, int, int, int], image_size: tuple[int, int]
) -> np.ndarray:
    """Full-image mask of a region stored with `encode_region`.

    Args:
        data: RLE bytes of the box crop.
        box: (x0, y0, x1, y1), x1/y1 exclusive.
        image_size: (H, W).

    Returns:
        [H, W] bool.
    """
    x0, y0, x1, y1 = (int(v) for v in box)
    mask = np.zeros((int(image_size[0]), int(image_size[1])), dtype=bool)
    mask[y0:y1, x0:x1] = decode_mask(data, (y1 - y0, x1 - x0))
    return mask
