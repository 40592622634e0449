"""Many users on one server (issue 6): no errors, no cross-talk, per-session state evicted.

Latencies are measured by benchmarks/bench_concurrency.py (results in benchmarks/results/), never
asserted here.
"""

import pytest
from PIL import Image

import app
import explorer as ex
from benchmarks.bench_concurrency import run_users, user_images
from tests.conftest import free_port


def test_twenty_users_upload_slide_and_click_without_errors_or_cross_talk(explorer):
    report = run_users(explorer, users=20, seconds=6, evict=5, max_sessions=24)
    assert report["errors"] == [] and report["cross_talk"] == []
    assert all(
        report["ops"][op]["n"] >= 2 * 20 for op in ("upload", "render", "click")
    )  # each user: >= 2 each
    assert (
        report["memory"]["sessions_held"] <= 24
    )  # 30 sessions came: the least recent were dropped


def test_state_of_the_least_recent_session_is_evicted_beyond_capacity(explorer, tmp_path):
    from gradio_client import Client, handle_file

    port = free_port()
    demo = app.launch(
        explorer,
        app.parse_args(["--port", str(port), "--max-sessions", "3"]),
        prevent_thread_lock=True,
        quiet=True,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        clients = []
        for user in range(5):
            path = tmp_path / f"u{user}.png"
            Image.fromarray(user_images(user)[0]).save(path)
            clients.append(Client(url, verbose=False))
            clients[-1].predict(handle_file(str(path)), 0, 0.45, False, api_name="/load_image")
        assert len(demo.state_holder.session_data) <= 3
        clients[-1].predict(
            3, 3, 0, 0.45, False, 3, "same level", True, api_name="/click_xy"
        )  # kept
        with pytest.raises(
            Exception, match="load an image first"
        ):  # dropped: the user starts again
            clients[0].predict(3, 3, 0, 0.45, False, 3, "same level", True, api_name="/click_xy")
    finally:
        demo.close()


def test_outputs_reach_gradio_as_files_that_its_cache_copies_atomically(explorer, tmp_path):
    """Two sessions showing the same tile must not truncate a file a third is downloading: the app
    hands gradio files (gradio copies those through a temp file and a rename) or inlined data: URLs
    (the hits), never arrays (which gradio encodes and writes in place)."""
    import os

    from gradio import processing_utils

    session = ex.set_image(explorer.predictor, user_images(0)[0])
    session, gallery = app._search_at(explorer, session, 3, 3, 0, 3, "same level", True)
    assert gallery["tiles"] and all(t["src"].startswith("data:image/") for t in gallery["tiles"])
    strip = app.strip_items(session)
    assert strip and all(isinstance(path, str) and os.path.exists(path) for path, _ in strip)
    first = processing_utils.save_file_to_cache(strip[0][0], str(tmp_path))
    with open(first, "rb") as reader:  # a download in progress holds the file open
        second = processing_utils.save_file_to_cache(strip[0][0], str(tmp_path))
        assert second == first and os.stat(first).st_ino == os.fstat(reader.fileno()).st_ino
        assert reader.read() == open(strip[0][0], "rb").read()  # whole, never rewritten
