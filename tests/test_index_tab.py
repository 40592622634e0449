"""index_tab.py: the Index tab's folder picker, index description, time left; Cancel keeps work."""

import os

import pytest

import explorer as ex
import explorer_service as svc
from index_tab import (
    UI_SHARD_IMAGES,
    Eta,
    folder_choices,
    format_duration,
    human_bytes,
    info_rows,
)
from tests.conftest import write_shapes_images
from tests.fakes import GridPredictor


def test_folder_choices_count_images_below_and_stay_inside_the_roots(tmp_path):
    root = tmp_path / "root"
    write_shapes_images(root / "a", [(8, 8)] * 3)
    write_shapes_images(root / "a" / "deep", [(8, 8)] * 2)
    (root / "empty").mkdir()
    (root / "notes.txt").write_text("not an image")
    outside = write_shapes_images(tmp_path / "outside", [(8, 8)] * 4)
    os.symlink(outside, root / "link")  # never followed
    choices = folder_choices([root])
    assert choices == [
        (f"{root} (5 images)", str(root)),
        (f"{root / 'a'} (5 images)", str(root / "a")),
        (f"{root / 'a' / 'deep'} (2 images)", str(root / "a" / "deep")),
    ]


def test_folder_choices_stop_at_the_depth_limit(tmp_path):
    root = tmp_path / "root"
    write_shapes_images(root / "1" / "2" / "3", [(8, 8)])
    assert [path for _, path in folder_choices([root], max_depth=2)] == []
    assert len(folder_choices([root], max_depth=3)) == 4


def test_info_rows_describe_a_complete_index_and_a_stopped_job():
    info = {
        "data_root": "/data/photos",
        "images": 1200,
        "skipped": 3,
        "regions": 88_000,
        "per_level": [60_000, 28_000],
        "num_levels": 2,
        "factory": "IVF1024,SQ8",
        "nprobe": 16,
        "dim": 512,
        "gpu": False,
        "size_bytes": 2_500_000,
        "checkpoint_hash": "0123456789abcdef" * 4,
        "created": "c",
        "updated": "u",
        "generation": 2,
    }
    rows = dict(info_rows(info))
    assert rows["images"] == "1,200 (3 skipped)"
    assert rows["regions"] == "88,000 (L0 60,000 · L1 28,000)"
    assert rows["search"].startswith("IVF1024,SQ8, nprobe 16; 512-d")
    assert rows["size on disk"] == "2.5 MB" and rows["model"] == "0123456789ab"
    stopped = dict(info_rows({"status": "stopped", "images_done": 8, "images_total": 20}))
    assert stopped["status"] == "stopped: 8 of 20 images done"
    assert "index" in dict(info_rows({}))


@pytest.mark.parametrize(
    "seconds,text", [(0, "0 s"), (59.6, "1 min 0 s"), (75, "1 min 15 s"), (4000, "1 h 6 min")]
)
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


def test_human_bytes():
    assert [human_bytes(n) for n in (999, 1536, 16_472_931, 3 * 10**12)] == [
        "999 B",
        "1.5 KB",
        "16.5 MB",
        "3.0 TB",
    ]


def test_eta_counts_only_this_runs_rate():
    now = [100.0]
    eta = Eta(clock=lambda: now[0])
    assert eta.update(8, 20) == "8 of 20 images"  # resumed at 8: no rate yet
    now[0] = 104.0
    assert eta.update(10, 20) == "10 of 20 images, about 20 s left"  # 2 images in 4 s
    now[0] = 120.0
    assert eta.update(20, 20) == "20 of 20 images"


def test_cancel_keeps_finished_shards_and_update_continues(tmp_path):
    """Issue 12 item 7: Cancel, then Update resumes where the job stopped (not from 0 of 20)."""
    data = write_shapes_images(tmp_path / "data", [(24, 32)] * 20)
    app = svc.Explorer(GridPredictor(), None, [], [data], tmp_path / "indexes")
    job, reports = svc.IndexJob(), []

    def stop_after_ten(done: int, total: int) -> None:
        reports.append(done)
        if done >= 10:
            job.stop.set()

    info, _ = svc.index_folder(app, str(data), "build", job, ex.Session(), stop_after_ten)
    assert info["status"] == "stopped" and info["images_total"] == 20
    resumed: list[int] = []
    info, session = svc.index_folder(
        app, str(data), "update", job, ex.Session(), lambda d, t: resumed.append(d)
    )
    assert resumed[0] >= UI_SHARD_IMAGES  # the finished shard was kept
    assert info["images"] == 20 and session.index_path
