import json
import os

import numpy as np
import pytest

import app
import explorer as ex
import explorer_service as svc
from hits_gallery import gallery_captions
from index.managed import open_or_build
from tests.conftest import free_port


def test_gallery_equals_index_query(explorer):
    session = app.open_path(explorer, explorer.examples[0], 1, 0.45, False)[0]
    assert session.source == "img0.png"
    session, _, items = ex.select_at(explorer.index, session, 10, 10, 1, k=4, one_per_image=True)
    level, region = session.selected
    want = explorer.index.search(
        session.prediction.levels[level].embeddings[region],
        k=4,
        levels=[1],
        exclude_image="img0.png",
        one_per_image=True,
    )
    assert [h.id for h in session.hits] == [h.id for h in want]
    assert [caption for _, caption in items] == [f"L1 · {h.score:.3f} · {h.image}" for h in want]
    assert all(h.image != "img0.png" for h in session.hits)
    every = ex.query_hits(explorer.index, session, 0, 0, k=2, every_level=True, one_per_image=False)
    assert sorted(every) == [0, 1, 2, 3] and all(
        all(h.level == lv for h in hs) for lv, hs in every.items()
    )


@pytest.fixture(scope="module")
def server(explorer):
    port = free_port()
    demo = app.launch(
        explorer, app.parse_args(["--port", str(port)]), prevent_thread_lock=True, quiet=True
    )
    yield f"http://127.0.0.1:{port}/"
    demo.close()


def test_api_through_gradio_client(server, explorer):
    from gradio_client import Client, handle_file

    client = Client(server, verbose=False)
    client.predict(handle_file(str(explorer.examples[1])), 0, 0.45, False, api_name="/load_image")
    _, strip, gallery, _ = client.predict(
        70, 30, 1, 0.45, False, 3, "same level", True, api_name="/click_xy"
    )
    assert [item["caption"].split(" · ")[0] for item in strip] == ["L0", "L1", "L2", "L3"]
    captions = gallery_captions(gallery)  # the hits gallery's value: tiles inlined (hits_gallery)
    assert len(captions) == 3 and all(c.startswith("L1 · ") for c in captions)
    assert all(t["src"].startswith("data:image/jpeg;base64,") for t in gallery["tiles"])
    other = Client(server, verbose=False)  # a second session has no image: no cross-talk
    with pytest.raises(Exception, match="load an image first"):
        other.predict(70, 30, 1, 0.45, False, 3, "same level", True, api_name="/click_xy")


def test_downloads_through_the_ui_say_what_to_do_first(server, explorer):
    import csv

    from gradio_client import Client, handle_file
    from PIL import Image

    client = Client(server, verbose=False)
    for api in ("/export", "/export_mask", "/export_cutout", "/export_hits"):
        with pytest.raises(Exception, match="load an image first"):
            client.predict(api_name=api)
    client.predict(handle_file(str(explorer.examples[1])), 0, 0.45, False, api_name="/load_image")
    with pytest.raises(Exception, match="select a region first"):
        client.predict(api_name="/export_mask")
    client.predict(70, 30, 1, 0.45, False, 3, "same level", True, api_name="/click_xy")
    mask = np.asarray(Image.open(client.predict(api_name="/export_mask")))
    assert mask.shape == Image.open(explorer.examples[1]).size[::-1] and mask[30, 70] == 255
    assert Image.open(client.predict(api_name="/export_cutout")).mode == "RGBA"
    with open(client.predict(api_name="/export_hits"), newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 3


def test_build_and_update_of_the_index_tab_run_one_at_a_time(tmp_path):
    """Issue 13 item 7: Build and Update were separate events and ran at once on one folder."""
    import threading
    import time

    from gradio_client import Client

    from tests.conftest import write_shapes_images
    from tests.fakes import GridPredictor

    class SlowPredictor(GridPredictor):
        """Counts predictions that run at the same time."""

        def __init__(self):
            self.lock, self.running, self.most = threading.Lock(), 0, 0
            self.started = threading.Event()

        def predict(self, image):
            with self.lock:
                self.running += 1
                self.most = max(self.most, self.running)
            self.started.set()
            time.sleep(0.3)
            try:
                return super().predict(image)
            finally:
                with self.lock:
                    self.running -= 1

    data = write_shapes_images(tmp_path / "data", [(48, 64)] * 4)
    predictor = SlowPredictor()
    explorer = svc.Explorer(predictor, None, [], [data], tmp_path / "indexes")
    port = free_port()
    demo = app.launch(
        explorer, app.parse_args(["--port", str(port)]), prevent_thread_lock=True, quiet=True
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        build = Client(url, verbose=False).submit(str(data), api_name="/build_index")
        assert predictor.started.wait(60)
        update = Client(url, verbose=False).submit(str(data), api_name="/update_index")
        built, updated = (
            dict(build.result(timeout=120)["data"]),
            dict(update.result(timeout=120)["data"]),
        )
    finally:
        demo.close()
    assert built["images"] == updated["images"] == "4 (0 skipped)"
    assert updated["generation"].startswith("1 ")  # nothing to update
    assert predictor.most == 1  # the update waited for the build


def test_links_out_of_the_data_root_are_not_shown_indexed_or_opened(tmp_path, monkeypatch):
    """Issue 13 item 1: a link in the data root published the file it points to (Examples, hits)."""
    import gradio as gr

    import hsg_core.predictor
    from tests.conftest import root_with_links_out
    from tests.fakes import GridPredictor

    root, outside = root_with_links_out(tmp_path)
    monkeypatch.setenv("HSG_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(
        hsg_core.predictor, "load_predictor", lambda *args, **kwargs: GridPredictor()
    )
    explorer = app.load_app(
        app.parse_args(["--data", str(root)])
    )  # the startup path of `hsg serve`
    inside = ["alias.png", "real.png", "sub/deep.png"]
    assert [p.relative_to(root).as_posix() for p in explorer.examples] == inside
    assert sorted(explorer.index.images()) == inside
    config = json.dumps(app.build_demo(explorer).get_config_file(), default=str)
    assert "notes.jpg" not in config and "photo.jpg" not in config and "secret" not in config
    vector = explorer.index.region_vector("real.png", 0, 0)
    hits = explorer.index.search(vector, k=200, levels=[0], one_per_image=False)
    hit = next(h for h in hits if h.image == "real.png")
    (root / "real.png").unlink()  # replaced by a link out after indexing: not opened either
    (root / "real.png").symlink_to(outside / "far.png")
    with pytest.raises(ValueError, match="real.png: not opened, it leads outside the data folder"):
        ex.hit_tiles(explorer.index, {0: [hit]})
    with pytest.raises(gr.Error, match="real.png: not opened, it leads outside the data folder"):
        app.open_path(explorer, root / "real.png", 0, 0.45, False, roots=explorer.data_roots)


def test_an_upload_error_names_the_file_escaped_and_no_server_folder(explorer):
    """Issue 13 items 3 and 9: uploads reach the project's loader as files; the one-line reason shows
    the upload's name with control characters escaped, never gradio's cache folder."""
    import shutil
    import tempfile
    from pathlib import Path

    import gradio as gr
    from gradio.data_classes import FileData
    from gradio.utils import get_upload_folder

    Path(get_upload_folder()).mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(dir=get_upload_folder()))  # where gradio keeps an upload
    upload = folder / "evil\nhsg: error: forged\x1b[2J.png"
    upload.write_bytes(b"not an image")
    try:
        component = app.build_demo(explorer).blocks
        image_input = next(b for b in component.values() if getattr(b, "elem_id", None) == "upload")
        value = image_input.preprocess(FileData(path=str(upload), orig_name=upload.name))
        with pytest.raises(gr.Error) as info:
            app._on_image(explorer, value, 0, 0.45, False)
    finally:
        shutil.rmtree(folder)
    assert (
        info.value.message
        == "evil\\nhsg: error: forged\\x1b[2J.png: not an image file (unrecognised format)"
    )


def test_the_cache_and_upload_folder_are_bounded_through_the_apps_own_builders(
    explorer, monkeypatch
):
    """gradio deletes uploads CACHE_TTL_S after they arrive, looking every CACHE_SWEEP_S (`delete_cache`), and
    `launch` passes the UploadBudget middleware: together they bound gradio's upload folder (~1.4 GB)."""
    monkeypatch.delenv(app.UPLOAD_ENV, raising=False)
    frequency, age = app.build_demo(explorer).delete_cache
    assert (
        (frequency, age) == (app.CACHE_SWEEP_S, app.CACHE_TTL_S)
        and frequency <= 600
        and age <= 3600
    )
    middleware = app.launch_options(app.parse_args([]), explorer)["app_kwargs"]["middleware"]
    assert [m.cls for m in middleware] == [app.UploadBudget]
    rate, burst = middleware[0].kwargs["bytes_per_hour"], middleware[0].kwargs["burst"]
    assert rate == app.UPLOAD_MB_PER_HOUR << 20 and burst == rate // 4
    assert burst + rate * (age + frequency) / 3600 <= 1.5 * 2**30  # the folder's bound
    monkeypatch.setenv(app.UPLOAD_ENV, "8")
    assert app.upload_budget().kwargs == {"bytes_per_hour": 8 << 20, "burst": 2 << 20}
    for bad in ("lots", "0", "-3", "inf"):
        monkeypatch.setenv(app.UPLOAD_ENV, bad)
        with pytest.raises(
            ValueError, match=f"{app.UPLOAD_ENV}='{bad}': expected a positive number"
        ):
            app.upload_budget()


def test_upload_budget_refills_at_its_rate_up_to_its_burst():
    now = [0.0]
    budget = app.UploadBudget(
        None, bytes_per_hour=3600, burst=100, clock=lambda: now[0]
    )  # 1 byte a second
    assert budget.admit(100) and not budget.admit(1)
    now[0] += 10
    assert budget.admit(10) and not budget.admit(1)
    now[0] += 10**6  # a long pause refills no more than the burst
    assert not budget.admit(101) and budget.admit(100)


def test_a_served_app_refuses_uploads_beyond_its_budget_before_reading_them(explorer, monkeypatch):
    """Served with 4 MB an hour (a 1 MB burst), 200 KB uploads pass until the burst is spent, then are
    refused with 429 before gradio writes them; an upload without a length is refused; pages still load."""
    import httpx
    from gradio.utils import get_upload_folder

    monkeypatch.setenv(app.UPLOAD_ENV, "4")
    port = free_port()
    demo = app.launch(
        explorer, app.parse_args(["--port", str(port)]), prevent_thread_lock=True, quiet=True
    )
    try:
        url = f"http://127.0.0.1:{port}/gradio_api/upload"
        accepted, statuses = [], []
        for i in range(12):
            response = httpx.post(url, files={"files": (f"u{i}.bin", b"x" * 200_000)}, timeout=30)
            statuses.append(response.status_code)
            if response.status_code == 200:
                accepted += response.json()
        assert statuses[:4] == [200] * 4 and statuses[-3:] == [429] * 3, statuses
        assert statuses.count(200) <= 6  # 1 MB of burst, and 4 MB an hour refills ~1.2 KB a second
        assert all(p.startswith(get_upload_folder()) for p in accepted)
        assert sum(os.path.getsize(p) for p in accepted) <= 1 << 20
        chunked = httpx.post(
            url,
            content=iter([b"--x\r\n", b"x" * 1000]),
            headers={"content-type": "multipart/form-data; boundary=x"},
            timeout=30,
        )
        assert chunked.status_code == 411
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=30).status_code == 200
    finally:
        demo.close()


def startup(root, monkeypatch, cache, *extra):
    """`hsg serve --data ROOT` as it starts (the fake predictor stands in for the checkpoint's model)."""
    import hsg_core.predictor
    from tests.fakes import GridPredictor

    monkeypatch.setenv("HSG_CACHE", str(cache))
    monkeypatch.setattr(
        hsg_core.predictor, "load_predictor", lambda *args, **kwargs: GridPredictor()
    )
    return app.load_app(app.parse_args([*(["--data", str(root)] if root else []), *extra]))


def test_an_index_built_from_the_index_tab_never_rewrites_the_startup_index_or_another(
    tmp_path, monkeypatch
):
    """Issue 13 item 2: a web Update of a subfolder named like the data root rewrote the startup index
    (its data_root changed, and the damage survived a restart); two folders sharing a name collided."""
    from index import SegmentIndex
    from tests.conftest import write_shapes_images

    root = write_shapes_images(tmp_path / "photos", [(48, 64)] * 3)
    for folder, count in (("photos", 1), ("a/x", 2), ("b/x", 1)):
        write_shapes_images(
            root / folder, [(40, 56)] * count, name=folder.replace("/", "_") + "{}.png"
        )
    served = startup(root, monkeypatch, tmp_path / "cache")
    everything = served.index.images()
    assert len(everything) == 7
    built = {}
    for folder in ("photos", "a/x", "b/x"):  # web users, Index tab
        rows, _, session = app.run_index_job(
            served,
            str(root / folder),
            "update",
            svc.IndexJob(),
            progress=lambda *args, **kwargs: None,
        )
        assert dict(rows)["status"] == "complete"
        built[folder] = session.index_path
    restarted = startup(root, monkeypatch, tmp_path / "cache")
    assert restarted.index.images() == everything and restarted.index.data_root == root
    assert len(set(built.values())) == 3
    for folder, path in built.items():  # each still covers its own folder
        index = SegmentIndex.open(path)
        assert (
            index.data_root == root / folder
            and len(index.images()) == {"photos": 1, "a/x": 2, "b/x": 1}[folder]
        )


def test_an_index_of_another_data_folder_is_refused_with_one_line(tmp_path, monkeypatch):
    """Issue 13 item 2: an existing index's data_root was never compared with --data."""
    from tests.conftest import write_shapes_images
    from tests.fakes import GridPredictor

    covered = write_shapes_images(tmp_path / "covered", [(48, 64)] * 2)
    other = write_shapes_images(tmp_path / "other", [(48, 64)] * 3)
    given = tmp_path / "given"
    predictor = GridPredictor()
    open_or_build(
        covered, given, svc.index_extractor(predictor), checkpoint_hash=predictor.checkpoint_hash
    )
    with pytest.raises(SystemExit) as info:
        startup(other, monkeypatch, tmp_path / "cache", "--index", str(given))
    message = str(info.value)
    assert message.startswith(
        f"hsg: error: {given / 'manifest.json'}: indexes the data folder {covered}, not {other}"
    )
    assert "\n" not in message
    served = startup(
        None, monkeypatch, tmp_path / "cache", "--index", str(given)
    )  # no --data: its own folder
    assert served.data_roots[0] == covered and len(served.index.images()) == 2


def test_an_index_built_in_one_session_is_searched_by_that_session_only(tmp_path, monkeypatch):
    """Issue 13 item 2: one user's build swapped the searched index for every session."""
    from gradio_client import Client, handle_file

    from tests.conftest import write_shapes_images

    root = write_shapes_images(tmp_path / "photos", [(48, 64)] * 4, name="r{}.png")
    write_shapes_images(root / "sub", [(40, 56)] * 3, name="s{}.png")
    served = startup(root, monkeypatch, tmp_path / "cache")
    port = free_port()
    demo = app.launch(
        served, app.parse_args(["--port", str(port)]), prevent_thread_lock=True, quiet=True
    )
    try:
        builder, other = (
            Client(f"http://127.0.0.1:{port}/", verbose=False),
            Client(f"http://127.0.0.1:{port}/", verbose=False),
        )
        builder.predict(str(root / "sub"), api_name="/build_index")
        searched = {}
        for name, client in (("builder", builder), ("other", other)):
            client.predict(
                handle_file(str(root / "r0.png")), 0, 0.45, False, api_name="/load_image"
            )
            _, _, gallery, _ = client.predict(
                10, 10, 0, 0.45, False, 8, "same level", True, api_name="/click_xy"
            )
            searched[name] = {c.split(" · ")[-1] for c in gallery_captions(gallery)}
    finally:
        demo.close()
    assert searched["builder"] == {"s0.png", "s1.png", "s2.png"}  # the index of sub/, its own build
    assert {"r1.png", "r2.png", "r3.png"} <= searched["other"]  # still the startup index of photos/
