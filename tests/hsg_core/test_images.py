import os

import numpy as np
import pytest
from PIL import Image

from hsg_core.images import ImageReadError, check_rgb, downscale_to, list_images, load_image


def test_formats_become_rgb8(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (7, 11, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    assert np.array_equal(load_image(tmp_path / "a.png"), rgb)
    Image.fromarray(rgb[..., 0]).save(tmp_path / "gray.png")
    assert load_image(tmp_path / "gray.png").shape == (7, 11, 3)
    rgba = np.dstack([rgb, np.zeros((7, 11), np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "t.png")
    assert (load_image(tmp_path / "t.png") == 255).all()  # fully transparent -> white
    Image.fromarray(rgb[..., 0].astype(np.uint16) * 257).save(tmp_path / "deep.png")
    assert np.abs(load_image(tmp_path / "deep.png")[..., 0].astype(int) - rgb[..., 0]).max() <= 1
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "c.jpg")
    assert load_image(tmp_path / "c.jpg").shape == (7, 11, 3)


def test_exif_orientation_is_applied(tmp_path):
    img = Image.fromarray(np.zeros((10, 20, 3), np.uint8))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 CW when displayed
    img.save(tmp_path / "r.jpg", exif=exif)
    assert load_image(tmp_path / "r.jpg").shape == (20, 10, 3)


def test_bad_files_give_one_line_errors(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("hello")
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "ok.jpg")
    (tmp_path / "cut.jpg").write_bytes((tmp_path / "ok.jpg").read_bytes()[:200])
    cases = {
        "empty.jpg": "empty file",
        "text.jpg": "not an image",
        "cut.jpg": "corrupt or truncated",
        "missing.jpg": "no such file",
    }
    for name, reason in cases.items():
        with pytest.raises(ImageReadError, match=reason) as info:
            load_image(tmp_path / name)
        assert name in str(info.value) and "\n" not in str(info.value)


def test_downscale_and_check():
    img = np.zeros((100, 50, 3), np.uint8)
    assert downscale_to(img, 40).shape == (40, 20, 3)
    assert downscale_to(img, 0) is img
    assert check_rgb(np.zeros((3, 4), np.uint8)).shape == (3, 4, 3)
    with pytest.raises(ValueError, match="expected uint8"):
        check_rgb(np.zeros((3, 4, 3), np.float32))


def test_list_images_recursive_and_loop_safe(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for p in ("x.JPG", "a/y.png", "a/b/z.webp", "a/notes.txt"):
        (tmp_path / p).write_bytes(b"0")
    os.symlink(tmp_path, tmp_path / "a" / "loop")
    found = [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)]
    assert sorted(set(found)) == ["a/b/z.webp", "a/y.png", "x.JPG"]
    with pytest.raises(FileNotFoundError, match="not a folder"):
        list_images(tmp_path / "nope")


def test_list_images_skips_links_that_lead_out_of_the_root(tmp_path):
    from tests.conftest import root_with_links_out

    root, _ = root_with_links_out(tmp_path)
    found = [p.relative_to(root).as_posix() for p in list_images(root)]
    assert found == [
        "alias.png",
        "real.png",
        "sub/deep.png",
    ]  # notes.jpg, photo.jpg, elsewhere/*: outside


def test_training_and_index_share_one_suffix_list_with_gif_and_avif(tmp_path):
    from hsg_core import images

    for name, fmt in (("a.gif", "GIF"), ("b.AVIF", "AVIF"), ("c.png", "PNG")):
        Image.new("RGB", (8, 6), (200, 10, 10)).save(tmp_path / name, format=fmt)
    assert [p.name for p in list_images(tmp_path)] == ["a.gif", "b.AVIF", "c.png"]
    import hsg_files

    assert images.IMAGE_SUFFIXES is hsg_files.IMAGE_SUFFIXES
    assert load_image(tmp_path / "b.AVIF").shape == (6, 8, 3)


def test_pixel_limit_holds_before_decoding_whatever_the_warning_filter(tmp_path, monkeypatch):
    """The bomb check reads the header's size itself: another thread resetting the process-wide
    warning filter (which PIL's own check relies on below twice its limit) cannot let a bomb decode."""
    import warnings

    from PIL import ImageFile

    from tests.conftest import png_header_only

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header_only(14000, 14000))  # 1.96e8 pixels: PIL alone would only warn
    decoded = []
    monkeypatch.setattr(
        ImageFile.ImageFile, "load", lambda self: decoded.append(self.size) or 1 / 0
    )
    monkeypatch.setattr(
        warnings, "simplefilter", lambda *args, **kwargs: None
    )  # the filter "reset"
    with pytest.raises(ImageReadError) as info:
        load_image(bomb)
    assert (
        str(info.value) == f"{bomb}: too large (more than 100,000,000 pixels); downscale it first"
    )
    assert decoded == []
