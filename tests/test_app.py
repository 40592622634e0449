import json
import zipfile

import numpy as np
import pytest

import app
from hsg_core.viz import boundaries, palette
from tests.conftest import free_port


def wide_session(explorer):
    image = np.zeros((40, 160, 3), np.uint8)
    image[:, 80:] = 255  # right half white
    return app.set_image(explorer.predictor, image)


def test_click_selects_the_region_under_x_y_on_a_non_square_image(explorer):
    session = wide_session(explorer)
    session, rows, _ = app.click(explorer.index, session, 150, 5, 0, k=3)
    # x = 150 of 160 -> grid column 7, y = 5 of 40 -> grid row 1: cell 1 * 8 + 7
    assert session.selected == (0, 15)
    assert [r[1] for r in rows] == [15, 3, 1, 0]
    assert rows[0][2] == 20 * 5  # a cell is 20 x 5 pixels
    with pytest.raises(ValueError, match="outside the 160x40 image"):
        app.click(explorer.index, session, 5, 150, 0)


def test_slider_renders_that_levels_label_map(explorer):
    session = wide_session(explorer)
    for level in range(4):
        out = app.render(session, level, opacity=1.0)
        labels = session.prediction.levels[level].label_map
        colours = palette(int(labels.max()) + 1)
        inner = ~boundaries(labels)
        assert np.array_equal(out[inner], colours[labels][inner])
    assert app.render(app.Session(), 0) is None
    assert np.array_equal(app.render(session, 99, 1.0), app.render(session, 3, 1.0))  # clamped


def test_gallery_equals_index_query(explorer):
    session = app.open_path(explorer, explorer.examples[0], 1, 0.45, False)[0]
    assert session.source == "img0.png"
    session, _, items = app.click(explorer.index, session, 10, 10, 1, k=4, one_per_image=True)
    level, region = session.selected
    want = explorer.index.search(session.prediction.levels[level].embeddings[region], k=4, levels=[1],
                                 exclude_image="img0.png", one_per_image=True)
    assert [h.id for h in session.hits] == [h.id for h in want]
    assert [caption for _, caption in items] == [f"L1 · {h.score:.3f} · {h.image}" for h in want]
    assert all(h.image != "img0.png" for h in session.hits)
    every = app.query_hits(explorer.index, session, 0, 0, k=2, every_level=True, one_per_image=False)
    assert sorted(every) == [0, 1, 2, 3] and all(all(h.level == lv for h in hs) for lv, hs in every.items())


def test_export_and_figures(explorer):
    session = wide_session(explorer)
    path = app.export_zip(session)
    with zipfile.ZipFile(path) as zf:
        assert sorted(zf.namelist()) == ["hierarchy.json", "level0_labels.png", "level1_labels.png",
                                         "level2_labels.png", "level3_labels.png"]
        assert json.loads(zf.read("hierarchy.json"))["image_size"] == [40, 160]
    fig = app.hierarchy_figure(session)
    assert len(fig.data[0].ids) == 64 + 16 + 4 + 1
    session, _, _ = app.click(explorer.index, session, 3, 3, 0, k=3)
    fig = app.embedding_figure(explorer.index, session)
    assert [t.name for t in fig.data] == ["indexed regions", "hits", "query"]
    regions = app.region_map(explorer.index)
    assert app.region_map(explorer.index) is regions  # fitted once per index, not per click
    level, region = session.selected
    star = regions.project(session.prediction.levels[level].embeddings[region])[0]
    assert np.allclose([fig.data[2].x[0], fig.data[2].y[0]], star)
    assert len(fig.data[0].x) == min(4000, len(explorer.index))


def test_folder_outside_roots_is_refused(explorer, tmp_path):
    import gradio as gr

    root = explorer.data_roots[0]
    assert app.resolve_folder(str(root), explorer.data_roots) == root.resolve()
    for bad in ("/etc", str(root / ".." / ".."), ""):
        with pytest.raises(gr.Error):
            app.resolve_folder(bad, explorer.data_roots)
    (root / "escape").symlink_to(tmp_path)
    with pytest.raises(gr.Error, match="outside the allowed data roots"):
        app.resolve_folder(str(root / "escape"), explorer.data_roots)
    (root / "escape").unlink()


@pytest.fixture(scope="module")
def server(explorer):
    port = free_port()
    demo = app.launch(explorer, app.parse_args(["--port", str(port)]), prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


def test_api_through_gradio_client(server, explorer):
    from gradio_client import Client, handle_file

    client = Client(server, verbose=False)
    client.predict(handle_file(str(explorer.examples[1])), 0, 0.45, False, api_name="/load_image")
    _, chain, gallery, _ = client.predict(70, 30, 1, 0.45, False, 3, "same level", True, api_name="/click_xy")
    assert [row[0] for row in chain["data"]] == [0, 1, 2, 3]
    assert len(gallery) == 3 and all(item["caption"].startswith("L1 · ") for item in gallery)
    other = Client(server, verbose=False)  # a second session has no image: no cross-talk
    with pytest.raises(Exception, match="load an image first"):
        other.predict(70, 30, 1, 0.45, False, 3, "same level", True, api_name="/click_xy")


def test_pick_a_region_from_the_hierarchy_list(explorer):
    session = wide_session(explorer)
    choices = app.region_choices(session)
    assert len(choices) == 64 + 16 + 4 + 1 and choices[0] == "L3:0 (100.0%)"
    assert "L1:5 (6.2%)" in choices
    session, rows, items = app.select_region(explorer.index, session, 1, 5, k=3)
    assert session.selected == (1, 5) and rows[1][1] == 5 and len(items) == 3
    assert all(h.level == 1 for h in session.hits)
