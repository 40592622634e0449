"""Shared fixtures. Tests run on CPU unless TORCH_DEVICE says otherwise (as timm's suite).

Tests that need fetched pretrained weights use `fetched_weights`: it skips with the reason when
the weights are absent, unless HSG_REQUIRE_WEIGHTS=1 (CI sets it, after `hsg weights fetch`),
where a missing file fails the test instead of hiding it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BSDS_ROOT = REPO.parent / "shared" / "datasets" / "BSDS500"


@pytest.fixture
def fetched_weights():
    """Callable: fetched_weights("hed") -> Path of the cached weight file."""
    from hsg_core.weights import WeightsMissingError, weights_path

    def get(name: str) -> Path:
        try:
            return weights_path(name)
        except WeightsMissingError as err:
            if os.environ.get("HSG_REQUIRE_WEIGHTS") == "1":
                pytest.fail(str(err))
            pytest.skip(str(err))

    return get


@pytest.fixture
def bsds_root() -> Path:
    if not BSDS_ROOT.is_dir():
        pytest.skip(f"BSDS500 not found at {BSDS_ROOT}")
    return BSDS_ROOT


@pytest.fixture
def torch_device():
    import torch

    return torch.device(os.environ.get("TORCH_DEVICE", "cpu"))


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA; none on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_shapes_image(rng, height: int = 64, width: int = 80):
    """A synthetic photo-like image: a smooth background and a few coloured shapes, plus noise."""
    import numpy as np

    yy, xx = np.mgrid[0:height, 0:width]
    image = np.zeros((height, width, 3), np.float64)
    image[:] = rng.uniform(40, 200, 3) + 30 * (xx / width)[..., None]
    for _ in range(int(rng.integers(2, 5))):
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        r = rng.uniform(6, 20)
        colour = rng.uniform(0, 255, 3)
        if rng.random() < 0.5:
            inside = (yy - cy) ** 2 + (xx - cx) ** 2 < r**2
        else:
            inside = (abs(yy - cy) < r) & (abs(xx - cx) < r * 0.7)
        image[inside] = colour
    image += rng.normal(0, 4, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


@pytest.fixture
def image_folder(tmp_path):
    """Folder of 6 generated images (two sizes, one in a subfolder); returns its path."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    root = tmp_path / "images"
    (root / "sub").mkdir(parents=True)
    for i in range(6):
        h, w = (64, 80) if i % 2 else (72, 60)
        target = root / ("sub" if i == 5 else "") / f"img{i}.png"
        Image.fromarray(make_shapes_image(rng, h, w)).save(target)
    return root


def write_shapes_images(folder: Path, sizes: list[tuple[int, int]], name: str = "{}.png") -> Path:
    """`folder` with one generated image per (height, width), named name.format(i) (seed 0)."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, (height, width) in enumerate(sizes):
        Image.fromarray(make_shapes_image(rng, height, width)).save(folder / name.format(i))
    return folder


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """(checkpoint of `hsg train --config tiny` for 2 steps, its folder of 3 generated 48x64 images)."""
    import cli

    root = tmp_path_factory.mktemp("tiny")
    images = write_shapes_images(root / "images", [(48, 64)] * 3)
    run = root / "run"
    assert (
        cli.main(
            [
                "train",
                "--config",
                "tiny",
                "--data",
                str(images),
                "--out",
                str(run),
                "--set",
                "train.iterations=2",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    return run / "checkpoint.pt", images


@pytest.fixture(scope="module")
def explorer(tmp_path_factory):
    """The app over a fake predictor (tests.fakes.GridPredictor) and an index of 5 generated images."""
    import explorer_service as svc
    from index.managed import open_or_build
    from tests.fakes import GridPredictor

    root = tmp_path_factory.mktemp("app")
    data = write_shapes_images(root / "data", [(60 + 8 * i, 96) for i in range(5)], "img{}.png")
    predictor = GridPredictor()
    index = open_or_build(
        data,
        root / "index",
        svc.index_extractor(predictor),
        checkpoint_hash=predictor.checkpoint_hash,
    )
    return svc.Explorer(predictor, index, sorted(data.glob("*.png")), [data], root / "indexes")


def png_header_only(width: int, height: int, colour_type: int = 2) -> bytes:
    """A PNG whose header claims width x height but which holds almost no data (a decompression bomb);
    colour_type 2 is RGB, 0 grey."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


def tree_digest(folder) -> dict:
    """{relative path: sha256} of every file under `folder`: equal before and after = nothing written."""
    import hashlib

    folder = Path(folder)
    if not folder.exists():
        return {}
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def assert_one_line_error(code: int, err: str, *needles: str) -> str:
    """`hsg` exited 2 with exactly one error line (progress bars aside) containing every needle."""
    import re

    from serve_options import NOTE  # the explorer's status lines, like progress bars, are no error

    lines = [
        line
        for line in err.splitlines()
        if line.strip() and not re.search(r"\d+%\|", line) and not line.startswith(NOTE)
    ]
    assert code == 2, (code, err)
    assert len(lines) == 1 and lines[0].startswith("hsg: error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.fixture
def run_hsg(capsys):
    """Callable: run_hsg(*argv) -> (exit code, stdout, stderr) of the `hsg` console script, in-process."""
    import cli

    def run(*argv):
        capsys.readouterr()
        code = cli.main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def root_with_links_out(base: Path) -> tuple[Path, Path]:
    """(root, outside) for issue 13 item 1. root: real.png, sub/deep.png and alias.png -> real.png (a
    link that stays inside: listed); notes.jpg -> outside/secret.txt, photo.jpg -> outside/photo.jpg (a
    real JPEG) and elsewhere/ -> outside/ (links that lead out: never listed, indexed, shown or opened)."""
    import numpy as np
    from PIL import Image

    root, outside = base / "root", base / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    pixels = np.full((20, 30, 3), 120, np.uint8)
    for path in (
        root / "real.png",
        root / "sub" / "deep.png",
        outside / "photo.jpg",
        outside / "far.png",
    ):
        Image.fromarray(pixels).save(path)
    (outside / "secret.txt").write_text("top secret")
    (root / "alias.png").symlink_to(root / "real.png")
    (root / "notes.jpg").symlink_to(outside / "secret.txt")
    (root / "photo.jpg").symlink_to(outside / "photo.jpg")
    (root / "elsewhere").symlink_to(outside, target_is_directory=True)
    return root, outside
