"""Bad and odd image files, and dataset folders holding them (issue 6).

A bad file is refused with one line naming it and the problem, from the library (`load_image`)
and from the console script (`hsg segment` exits 2, writes nothing). A valid but unusual file is
converted to the right 8-bit RGB pixels. A dataset folder with bad files in it still builds (the
bad ones recorded as skipped); an empty or all-bad folder is one clear error.
"""

import builtins
import errno
import io
import os

import numpy as np
import pytest
from PIL import Image

from hsg_core.images import ImageReadError, load_image
from tests.conftest import assert_one_line_error, make_shapes_image, png_header_only, tree_digest

RGB = make_shapes_image(np.random.default_rng(1), 40, 60)


def encode(array: np.ndarray, fmt: str, mode: str | None = None, **params) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode).save(buffer, format=fmt, **params)
    return buffer.getvalue()


def write(path, data: bytes):
    path.write_bytes(data)
    return path


def garble(data: bytes, start: int, length: int) -> bytes:
    return data[:start] + b"\xff" * length + data[start + length :]


def unreadable(path, monkeypatch):
    """chmod 000; as root (who reads anything) open() of this one file is made to fail as it would."""
    path.chmod(0)
    if os.access(path, os.R_OK):
        real_open = builtins.open

        def guarded(file, *args, **kwargs):
            if isinstance(file, (str, os.PathLike)) and os.fspath(file) == str(path):
                raise PermissionError(errno.EACCES, "Permission denied", str(path))
            return real_open(file, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", guarded)
    return path


def symlink(path, target):
    os.symlink(target, path)
    return path


def link_loop(folder):
    os.symlink("loop_b.jpg", folder / "loop_a.jpg")
    os.symlink("loop_a.jpg", folder / "loop_b.jpg")
    return folder / "loop_a.jpg"


def fifo(path):
    os.mkfifo(path)
    return path


# (case id, maker(folder, monkeypatch) -> path, words the one-line error must hold)
BAD_FILES = [
    (
        "truncated-jpeg",
        lambda d, m: write(d / "cut.jpg", encode(RGB, "JPEG")[:600]),
        "corrupt or truncated",
    ),
    (
        "truncated-png",
        lambda d, m: write(d / "cut.png", encode(RGB, "PNG")[:300]),
        "corrupt or truncated",
    ),
    (
        "corrupt-jpeg-header",
        lambda d, m: write(d / "bad.jpg", garble(encode(RGB, "JPEG"), 2, 40)),
        "not an image",
    ),
    (
        "corrupt-png-data",
        lambda d, m: write(d / "bad.png", garble(encode(RGB, "PNG"), 60, 24)),
        "corrupt or truncated",
    ),
    ("zero-bytes", lambda d, m: write(d / "empty.jpg", b""), "empty file"),
    (
        "text-named-jpg",
        lambda d, m: write(d / "notes.jpg", b"hello, not a photo\n"),
        "not an image file",
    ),
    (
        "html-named-png",
        lambda d, m: write(d / "page.png", b"<html><body>404</body></html>"),
        "not an image file",
    ),
    ("missing", lambda d, m: d / "missing.png", "no such file"),
    ("folder-named-jpg", lambda d, m: (d / "album.jpg").mkdir() or d / "album.jpg", "is a folder"),
    ("fifo-named-jpg", lambda d, m: fifo(d / "pipe.jpg"), "not a regular file"),
    ("symlink-loop", lambda d, m: link_loop(d), "symbolic link loop"),
    ("dangling-symlink", lambda d, m: symlink(d / "gone.png", d / "nowhere.png"), "no such file"),
    (
        "unreadable",
        lambda d, m: unreadable(write(d / "locked.png", encode(RGB, "PNG")), m),
        "permission denied",
    ),
    (
        "bomb-20000x20000",
        lambda d, m: write(d / "huge.png", png_header_only(20000, 20000)),
        "too large",
    ),
    (
        "bomb-12000x9000",
        lambda d, m: write(d / "big.png", png_header_only(12000, 9000)),
        "too large",
    ),
]


@pytest.mark.parametrize("make, reason", [c[1:] for c in BAD_FILES], ids=[c[0] for c in BAD_FILES])
def test_bad_file_is_one_line_error_from_load_image(tmp_path, monkeypatch, make, reason):
    path = make(tmp_path, monkeypatch)
    with pytest.raises(ImageReadError) as info:
        load_image(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and reason in message and "\n" not in message


@pytest.mark.parametrize("make, reason", [c[1:] for c in BAD_FILES], ids=[c[0] for c in BAD_FILES])
def test_bad_file_is_one_line_error_from_hsg_segment(
    tmp_path, monkeypatch, run_hsg, tiny_checkpoint, make, reason
):
    path = make(tmp_path, monkeypatch)
    out = tmp_path / "out"
    code, _, err = run_hsg("segment", path, "--checkpoint", tiny_checkpoint[0], "--out", out)
    assert_one_line_error(code, err, str(path), reason)
    assert not out.exists()  # nothing written


def gif_or_webp(fmt: str) -> bytes:
    frames = [
        Image.new("RGB", (30, 20), colour) for colour in ((255, 0, 0), (0, 0, 255), (0, 255, 0))
    ]
    buffer = io.BytesIO()
    extra = {"lossless": True} if fmt == "WEBP" else {}
    frames[0].save(
        buffer, format=fmt, save_all=True, append_images=frames[1:], duration=100, loop=0, **extra
    )
    return buffer.getvalue()


def exif_rotated(orientation: int) -> bytes:
    """A 20x40 JPEG, left half red and right half blue as stored, with an EXIF orientation tag."""
    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:, :20] = (255, 0, 0)
    stored[:, 20:] = (0, 0, 255)
    img = Image.fromarray(stored)
    exif = img.getexif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", exif=exif, quality=95)
    return buffer.getvalue()


def halves(first, second, axis: int, shape) -> np.ndarray:
    out = np.zeros((*shape, 3), np.uint8)
    cut = shape[axis] // 2
    index = (slice(None, cut), slice(None)) if axis == 0 else (slice(None), slice(None, cut))
    out[:] = second
    out[index] = first
    return out


GRAY = RGB[..., 1]
ALPHA = (
    np.where(np.arange(60) < 30, 0, 255).astype(np.uint8)[None].repeat(40, 0)
)  # left half transparent
RED, BLUE = (255, 0, 0), (0, 0, 255)
# (case id, file name, bytes, expected [H, W, 3] uint8, tolerance)
ODD_FILES = [
    ("grayscale", "g.png", encode(GRAY, "PNG"), np.dstack([GRAY] * 3), 0),
    (
        "grayscale-alpha",
        "la.png",
        encode(np.dstack([GRAY, ALPHA]), "PNG", "LA"),
        np.where(ALPHA[..., None] == 0, 255, np.dstack([GRAY] * 3)),
        0,
    ),
    (
        "rgba-on-white",
        "t.png",
        encode(np.dstack([RGB, ALPHA]), "PNG", "RGBA"),
        np.where(ALPHA[..., None] == 0, 255, RGB),
        0,
    ),
    (
        "16-bit-png",
        "deep.png",
        encode(GRAY.astype(np.uint16) * 257, "PNG"),
        np.dstack([GRAY] * 3),
        0,
    ),
    (
        "bilevel-1-bit",
        "bw.png",
        encode(GRAY > 128, "PNG"),
        np.dstack([np.where(GRAY > 128, 255, 0)] * 3),
        0,
    ),
    ("cmyk-jpeg", "cmyk.jpg", None, halves(RED, BLUE, 1, (40, 60)), 12),
    (
        "animated-gif-first-frame",
        "anim.gif",
        gif_or_webp("GIF"),
        np.full((20, 30, 3), RED, np.uint8),
        0,
    ),
    (
        "animated-webp-first-frame",
        "movie.webp",
        gif_or_webp("WEBP"),
        np.full((20, 30, 3), RED, np.uint8),
        0,
    ),
    ("exif-rotate-90-cw", "rot6.jpg", exif_rotated(6), halves(RED, BLUE, 0, (40, 20)), 40),
    ("exif-rotate-180", "rot3.jpg", exif_rotated(3), halves(BLUE, RED, 1, (20, 40)), 40),
    ("exif-rotate-90-ccw", "rot8.jpg", exif_rotated(8), halves(BLUE, RED, 0, (40, 20)), 40),
    ("1x1", "dot.png", encode(RGB[:1, :1], "PNG"), RGB[:1, :1], 0),
]


def odd_bytes(name: str, data: bytes | None) -> bytes:
    if data is not None:
        return data
    cmyk = Image.fromarray(halves(RED, BLUE, 1, (40, 60))).convert("CMYK")  # a print-shop JPEG
    buffer = io.BytesIO()
    cmyk.save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "name, data, want, tol", [c[1:] for c in ODD_FILES], ids=[c[0] for c in ODD_FILES]
)
def test_odd_but_valid_image_becomes_the_right_rgb(tmp_path, name, data, want, tol):
    got = load_image(write(tmp_path / name, odd_bytes(name, data)))
    assert got.dtype == np.uint8 and got.shape == want.shape
    edge = np.ones(want.shape[:2], bool)
    if tol:  # lossy JPEG: compare away from the colour edge
        h, w = want.shape[:2]
        edge[h // 2 - 3 : h // 2 + 3] = edge[:, w // 2 - 3 : w // 2 + 3] = False
    assert np.abs(got.astype(int) - want)[edge].max() <= tol


def test_odd_images_segment_through_the_cli(tmp_path, run_hsg, tiny_checkpoint):
    paths = [write(tmp_path / name, odd_bytes(name, data)) for _, name, data, _, _ in ODD_FILES]
    code, out, err = run_hsg(
        "segment", *paths, "--checkpoint", tiny_checkpoint[0], "--out", tmp_path / "out"
    )
    assert code == 0, err
    assert len(out.splitlines()) == len(paths)
    assert len(list((tmp_path / "out").glob("*_hierarchy.json"))) == len(paths)


def test_inputs_that_would_overwrite_each_others_outputs_are_refused(
    tmp_path, run_hsg, tiny_checkpoint
):
    first, second = tmp_path / "a" / "photo.png", tmp_path / "b" / "photo.jpg"
    for path in (first, second):
        path.parent.mkdir()
        write(path, encode(RGB, "PNG"))
    code, _, err = run_hsg(
        "segment", first, second, "--checkpoint", tiny_checkpoint[0], "--out", tmp_path / "out"
    )
    assert_one_line_error(code, err, str(second), "would overwrite", str(first))
    assert not (tmp_path / "out").exists()


def test_non_utf8_file_name_segments_and_prints_readably(tmp_path, run_hsg, tiny_checkpoint):
    raw = os.path.join(os.fsencode(tmp_path), b"caf\xe9.png")  # Latin-1 bytes: not valid UTF-8
    with open(raw, "wb") as fh:
        fh.write(encode(RGB, "PNG"))
    code, out, err = run_hsg(
        "segment", os.fsdecode(raw), "--checkpoint", tiny_checkpoint[0], "--out", tmp_path / "o"
    )
    assert code == 0, err
    assert "caf\ufffd.png: regions per level" in out
    assert len(os.listdir(os.fsencode(tmp_path / "o"))) == 3 * 2 + 1


def test_large_image_is_downscaled_by_the_documented_rule(tmp_path):
    big = np.zeros((1500, 3000, 3), np.uint8)
    big[:, 1500:] = 200
    path = write(tmp_path / "wide.png", encode(big, "PNG"))
    assert load_image(path).shape == (1500, 3000, 3)  # no max_side: full size
    small = load_image(
        path, max_side=1024
    )  # longer side becomes max_side, aspect kept, area filter
    assert small.shape == (512, 1024, 3)
    assert (small[:, :510] == 0).all() and (small[:, 514:] == 200).all()


def mixed_folder(root, monkeypatch):
    """Two good images plus one of every kind of bad entry a dataset folder may hold."""
    root.mkdir()
    rng = np.random.default_rng(3)
    for name in ("good1.png", "sub/good2.jpg"):
        (root / name).parent.mkdir(exist_ok=True)
        Image.fromarray(make_shapes_image(rng, 48, 64)).save(root / name)
    write(root / "cut.jpg", encode(RGB, "JPEG")[:600])
    write(root / "notes.jpg", b"not an image")
    write(root / "empty.png", b"")
    link_loop(root)
    os.symlink(root, root / "sub" / "loop_dir")  # a folder loop
    symlink(root / "gone.png", root / "nowhere.png")
    fifo(root / "pipe.jpg")
    unreadable(write(root / "locked.png", encode(RGB, "PNG")), monkeypatch)
    with open(
        os.path.join(os.fsencode(root), b"caf\xe9-latin1.png"), "wb"
    ) as fh:  # not valid UTF-8
        fh.write(encode(RGB, "PNG"))
    return root


def test_dataset_folder_with_bad_entries_builds_and_records_them(
    tmp_path, monkeypatch, run_hsg, tiny_checkpoint
):
    import json

    from index import SegmentIndex

    data = mixed_folder(tmp_path / "data", monkeypatch)
    out = tmp_path / "index"
    code, stdout, err = run_hsg(
        "index", "build", data, "--checkpoint", tiny_checkpoint[0], "--out", out
    )
    assert code == 0, err
    assert sorted(SegmentIndex.open(out).images()) == ["good1.png", "sub/good2.jpg"]
    skipped = {
        r["image"]: r["error"] for r in json.loads((out / "manifest.json").read_text())["skipped"]
    }
    assert "corrupt or truncated" in skipped["cut.jpg"] and "not an image" in skipped["notes.jpg"]
    assert (
        "empty file" in skipped["empty.png"]
        and "permission denied" in skipped["locked.png"].lower()
    )
    assert "not valid UTF-8" in skipped["caf\udce9-latin1.png"]
    assert not {"loop_a.jpg", "gone.png", "pipe.jpg"} & set(
        skipped
    )  # not regular files: never opened


def test_training_skips_bad_entries_of_its_folder(tmp_path, monkeypatch, run_hsg):
    from hsg_core.checkpoint import read_checkpoint

    data = mixed_folder(tmp_path / "data", monkeypatch)
    code, _, err = run_hsg(
        "train",
        "--config",
        "tiny",
        "--data",
        data,
        "--out",
        tmp_path / "run",
        "--set",
        "train.iterations=1",
        "--device",
        "cpu",
    )
    assert code == 0, err
    assert read_checkpoint(tmp_path / "run" / "checkpoint.pt")["step"] == 1


@pytest.mark.parametrize("command", ["index", "train"])
@pytest.mark.parametrize("content", ["empty", "all-bad", "a-file"])
def test_empty_or_unusable_dataset_folder_is_one_line_error(
    tmp_path, run_hsg, tiny_checkpoint, command, content
):
    data = tmp_path / "data"
    if content == "a-file":
        write(data, encode(RGB, "PNG"))
    else:
        data.mkdir()
    if content == "all-bad":
        write(data / "notes.jpg", b"not an image")
    out = tmp_path / "out"
    argv = (
        ["index", "build", data, "--checkpoint", tiny_checkpoint[0], "--out", out]
        if command == "index"
        else [
            "train",
            "--config",
            "tiny",
            "--data",
            data,
            "--out",
            out,
            "--set",
            "train.iterations=1",
            "--device",
            "cpu",
        ]
    )
    reason = {"empty": "no image", "all-bad": "notes.jpg", "a-file": "not"}[content]
    before = tree_digest(data)
    assert_one_line_error(*run_hsg(*argv)[::2], str(data), reason)
    assert not (out / "manifest.json").exists() and not (out / "checkpoint.pt").exists()
    assert tree_digest(data) == before
