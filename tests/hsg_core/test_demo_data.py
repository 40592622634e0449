import json

import numpy as np
import pytest
from PIL import Image

from hsg_core import demo_data


@pytest.fixture
def local_sources(tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (300 + 10 * i, 700, 3), dtype=np.uint8)).save(
            src / f"p{i}.png"
        )

    def fake_files(source, work):
        if source.name == "opencv":
            raise RuntimeError("apt-get download opencv-doc failed: no network")
        if source.name != "mate":
            return [], "0"
        return [(src / f"p{i}.png", f"pics/p{i}.png") for i in range(3)], "1.0"

    monkeypatch.setattr(demo_data, "_source_files", fake_files)
    return tmp_path


def test_reproducible_downscaled_and_listed(local_sources, caplog):
    out1, out2 = local_sources / "a", local_sources / "b"
    e1 = demo_data.fetch_demo_images(out1, max_side=128)
    e2 = demo_data.fetch_demo_images(out2, max_side=128)
    assert [e["file"] for e in e1] == ["mate_p0.jpg", "mate_p1.jpg", "mate_p2.jpg"]
    for a, b in zip(e1, e2):
        assert (out1 / a["file"]).read_bytes() == (out2 / b["file"]).read_bytes()
    img = Image.open(out1 / "mate_p0.jpg")
    assert img.size == (128, 55)  # 700 x 300 -> longer side 128, aspect kept
    manifest = json.loads((out1 / "manifest.json").read_text())
    assert demo_data.sha256(out1 / "mate_p1.jpg") == manifest["images"][1]["sha256"]
    assert "mate_p2.jpg" in (out1 / "LICENSES.md").read_text()
    assert any("opencv skipped" in r.getMessage() for r in caplog.records)
    assert demo_data.demo_images(out1)[0].name == "mate_p0.jpg"


def test_no_source_is_an_error(local_sources):
    with pytest.raises(RuntimeError, match="no demo image"):
        demo_data.fetch_demo_images(local_sources / "c", sources=("opencv",))
    assert not (local_sources / "c").exists()
