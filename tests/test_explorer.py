"""explorer.py, the explorer without gradio: selection, retrieval policy, startup index, messages."""

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import embedding_map
import explorer as ex
import explorer_output as output
import explorer_service as svc
from hsg_core.viz import boundaries, crop_box, inner_band, outline_width
from index.managed import open_relocated
from tests.fakes import GridPredictor

REPO = Path(__file__).resolve().parents[1]


def wide_session(explorer):
    image = np.zeros((40, 160, 3), np.uint8)
    image[:, 80:] = 255
    return ex.set_image(explorer.predictor, image)


def modules_after(code: str) -> set[str]:
    """Top-level modules loaded by `code` run in a fresh interpreter at the repository root."""
    probe = f"import sys\ntry:\n    {code}\nexcept SystemExit:\n    pass\nprint(' '.join(sys.modules), file=sys.stderr)"
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
    )
    return {name.split(".")[0] for name in out.stderr.splitlines()[-1].split()}


def test_the_chain_table_describes_the_clicked_pixel_at_every_level(explorer):
    """Issue 12 item 10: a click at (150, 35) on level 2 listed the chain of the region's first pixel."""
    session, rows, _ = ex.select_at(explorer.index, wide_session(explorer), 150, 35, 2, k=3)
    assert [row[1] for row in rows] == [63, 15, 3, 0] == list(session.prediction.chain_at(150, 35))
    assert session.selected == (2, 3) and session.pixel == (150, 35)


def test_changing_the_settings_reruns_the_search_for_the_selected_region(explorer):
    """Issue 12 item 2: a new k (or mode) re-queries the selection, the clicked pixel kept."""
    session, rows, items = ex.select_at(
        explorer.index,
        svc.open_image(explorer, explorer.examples[0]),
        20,
        30,
        0,
        k=2,
        one_per_image=False,
    )
    assert len(items) == 2
    session, again, items = ex.rerun(explorer.index, session, 6, False, False)
    assert len(items) == len(session.hits) == 6 and again == rows and session.pixel == (20, 30)
    level, region = session.selected
    want = ex.query_hits(
        explorer.index, session, level, region, k=3, every_level=True, one_per_image=True
    )
    _, _, items = ex.rerun(explorer.index, session, 3, True, True)
    assert [h.id for h in session.hits] == [h.id for lv in sorted(want) for h in want[lv]] and len(
        items
    ) > 3


def test_rerun_with_nothing_selected_does_nothing(explorer):
    session = svc.open_image(explorer, explorer.examples[0])
    assert ex.rerun(explorer.index, session, 5, False, False) is None and session.hits == []
    assert ex.rerun(explorer.index, ex.Session(), 5, True, True) is None


def test_a_region_picked_by_id_describes_a_pixel_of_that_region(explorer):
    session, rows, _ = ex.select_region(
        explorer.index, wide_session(explorer), 1, 5, k=3, pixel=(0, 0)
    )
    assert rows[1][1] == 5  # (0, 0) is not in region 5: the region's own first pixel is described


def test_explorer_and_the_help_of_both_entry_points_load_neither_torch_nor_gradio():
    assert not modules_after("import explorer, explorer_service, explorer_output") & {
        "gradio",
        "torch",
    }
    help_app = "import runpy; sys.argv = ['app.py', '--help']; runpy.run_path('app.py', run_name='__main__')"
    assert not modules_after(help_app) & {"gradio", "torch", "faiss"}
    assert not modules_after("import cli; cli.main(['serve', '--help'])") & {
        "gradio",
        "torch",
        "faiss",
    }


def test_hsg_serve_has_every_option_of_app_py():
    def options(args: list[str]) -> set[str]:
        out = subprocess.run(
            [sys.executable, *args, "--help"], cwd=REPO, capture_output=True, text=True, check=True
        )
        return {word.strip(",[]") for word in out.stdout.split() if word.startswith("--")}

    app_options = options(["app.py"])
    assert {"--data-root", "--max-sessions", "--auth-file", "--data"} <= app_options
    assert app_options <= options(["-m", "cli", "serve"])


def test_every_level_is_one_search_across_levels_of_the_chain(explorer, monkeypatch):
    session = wide_session(explorer)
    calls = []
    real = explorer.index.search_across_levels
    monkeypatch.setattr(
        explorer.index, "search_across_levels", lambda v, **kw: calls.append(v) or real(v, **kw)
    )
    hits = ex.query_hits(explorer.index, session, 1, 5, k=2, every_level=True, one_per_image=False)
    chain = session.prediction.ancestors(1, 5)
    assert len(calls) == 1 and sorted(calls[0]) == [1, 2, 3] and sorted(hits) == [1, 2, 3]
    for level, region in zip((1, 2, 3), chain):
        assert np.array_equal(calls[0][level], session.prediction.levels[level].embeddings[region])


def test_clicking_or_exporting_before_an_image_says_what_to_do(explorer):
    for action in (
        lambda: ex.select_at(explorer.index, ex.Session(), 3, 3, 0),
        lambda: ex.select_region(explorer.index, ex.Session(), 0, 0),
        lambda: output.export_zip(ex.Session()),
    ):
        with pytest.raises(ValueError, match="load an image first"):
            action()


def test_downloads_of_the_selected_region_and_of_the_hits(explorer):
    import csv

    from PIL import Image

    session = wide_session(explorer)
    for export in (output.export_mask, output.export_cutout, output.export_hits_csv):
        with pytest.raises(ValueError, match="select a region first"):
            export(session)
    session, _, _ = ex.select_at(explorer.index, session, 150, 35, 2, k=3, one_per_image=False)
    inside = session.prediction.levels[2].label_map == 3
    mask = np.asarray(Image.open(output.export_mask(session)))
    assert (
        mask.shape == (40, 160)
        and np.array_equal(mask == 255, inside)
        and set(np.unique(mask)) == {0, 255}
    )
    ys, xs = np.nonzero(inside)
    cutout = np.asarray(Image.open(output.export_cutout(session)))
    box = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
    assert cutout.shape == (ys.max() - ys.min() + 1, xs.max() - xs.min() + 1, 4)
    assert np.array_equal(cutout[..., 3] == 255, inside[box])
    assert np.array_equal(cutout[..., :3][inside[box]], session.image[box][inside[box]])
    with open(output.export_hits_csv(session), newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["image"], int(r["level"]), int(r["region"])) for r in rows] == [
        (h.image, h.level, h.region) for h in session.hits
    ]
    assert [float(r["score"]) for r in rows] == pytest.approx(
        [h.score for h in session.hits], abs=1e-6
    )
    assert [tuple(int(r[c]) for c in ("x0", "y0", "x1", "y1")) for r in rows] == [
        tuple(h.box) for h in session.hits
    ]
    with zipfile.ZipFile(output.export_hits_zip(explorer.index, session)) as archive:
        crops = sorted(n for n in archive.namelist() if n.endswith(".png"))
        assert archive.read("hits.csv") == Path(output.export_hits_csv(session)).read_bytes()
        assert len(crops) == len(session.hits)
        for name, hit in zip(crops, session.hits):  # named by rank, the gallery's tile
            assert (
                name
                == f"{crops.index(name) + 1:02d}_L{hit.level}_{Path(hit.image).stem}_r{hit.region}.png"
            )
            tile = ex.hit_tile(explorer.index, hit).crop
            assert np.array_equal(np.asarray(Image.open(archive.open(name))), tile)
    with pytest.raises(ValueError, match="select a region first"):
        output.export_hits_zip(explorer.index, wide_session(explorer))


def test_hit_file_names_cannot_become_spreadsheet_formulas():
    assert output.spreadsheet_safe('=HYPERLINK("http://x").jpg') == '\'=HYPERLINK("http://x").jpg'
    assert [output.spreadsheet_safe(n) for n in ("+1.jpg", "-a.png", "@b.png", "\tc.png")] == [
        "'+1.jpg",
        "'-a.png",
        "'@b.png",
        "'\tc.png",
    ]
    assert output.spreadsheet_safe("photos/a=b.jpg") == "photos/a=b.jpg"


def test_click_selects_the_region_under_x_y_on_a_non_square_image(explorer):
    session = wide_session(explorer)
    session, rows, _ = ex.select_at(explorer.index, session, 150, 5, 0, k=3)
    # x = 150 of 160 -> grid column 7, y = 5 of 40 -> grid row 1: cell 1 * 8 + 7
    assert session.selected == (0, 15)
    assert [r[1] for r in rows] == [15, 3, 1, 0]
    assert rows[0][2] == 20 * 5  # a cell is 20 x 5 pixels
    with pytest.raises(ValueError, match="outside the 160x40 image"):
        ex.select_at(explorer.index, session, 5, 150, 0)


def test_slider_renders_that_levels_label_map(explorer):
    session = wide_session(explorer)
    for level in range(4):
        out = ex.render(session, level, opacity=1.0)
        labels = session.prediction.levels[level].label_map
        colours = ex.level_colours(session.prediction)[level]
        inner = ~boundaries(labels)
        assert np.array_equal(out[inner], colours[labels][inner])
    assert ex.render(ex.Session(), 0) is None
    assert np.array_equal(ex.render(session, 99, 1.0), ex.render(session, 3, 1.0))  # clamped


def test_export_and_figures(explorer):
    session = wide_session(explorer)
    path = output.export_zip(session)
    with zipfile.ZipFile(path) as zf:  # hsg segment's files (tests/hsg_core/test_export.py)
        names = [f"image_level{lv}_{kind}.png" for lv in range(4) for kind in ("color", "labels")]
        assert sorted(zf.namelist()) == sorted([*names, "image_hierarchy.json"])
        assert json.loads(zf.read("image_hierarchy.json"))["image_size"] == [40, 160]
    fig = output.hierarchy_figure(session)
    assert len(fig.data[0].ids) == 64 + 16 + 4 + 1
    session, _, _ = ex.select_at(explorer.index, session, 3, 3, 0, k=3)
    regions = embedding_map.region_map(explorer.index)
    assert embedding_map.region_map(explorer.index) is regions  # fitted once per index
    assert len(regions.xy) == min(4000, len(explorer.index))


def test_pick_a_region_from_the_hierarchy_list(explorer):
    session = wide_session(explorer)
    choices = ex.region_choices(session)
    assert len(choices) == 64 + 16 + 4 + 1 and choices[0] == ("L3:0 (100.0%)", "3:0")
    assert ("L1:5 (6.2%)", "1:5") in choices  # (label, value): the value never parses a label
    assert ex.parse_choice("1:5") == (1, 5)
    session, rows, items = ex.select_region(explorer.index, session, 1, 5, k=3)
    assert session.selected == (1, 5) and rows[1][1] == 5 and len(items) == 3
    assert all(h.level == 1 for h in session.hits)


# ----------------------------------------------------------------------------- hits in context
def searched(explorer, **options):
    """A session after a click on level 1 of the first example, with its hits."""
    session = svc.open_image(explorer, explorer.examples[0])
    session, _, _ = ex.select_at(explorer.index, session, 20, 30, 1, k=4, **options)
    return session


def test_a_hit_tile_crops_with_the_margin_outlines_the_region_and_names_the_file(explorer):
    hit = searched(explorer).hits[0]
    tile = ex.hit_tile(explorer.index, hit)
    mask = explorer.index.region_mask(hit)
    x0, y0, x1, y1 = crop_box(hit.box, mask.shape)
    assert tile.crop.shape == (y1 - y0, x1 - x0, 3) and tile.title == hit.image and tile.hit == hit
    assert x0 <= hit.box[0] and y0 <= hit.box[1] and x1 >= hit.box[2] and y1 >= hit.box[3]
    assert 0 <= x0 and 0 <= y0 and x1 <= mask.shape[1] and y1 <= mask.shape[0]  # clipped
    gold = np.all(tile.crop == (255, 215, 0), axis=-1)
    assert np.array_equal(gold, inner_band(mask[y0:y1, x0:x1]))
    assert tile.caption.endswith(hit.image)


def test_opening_a_hit_in_context_outlines_its_region_and_keeps_the_query(explorer):
    session = searched(explorer)
    selected, hits = session.selected, list(session.hits)
    hit = ex.hit_at(session, 2)
    session, image = ex.open_hit(explorer.index, session, hit)
    mask = explorer.index.region_mask(hit)
    assert image.shape == (*hit.image_size, 3) and session.context == hit
    gold = np.all(image == (255, 215, 0), axis=-1)
    assert np.array_equal(gold, inner_band(mask, outline_width(image.shape)))
    assert session.selected == selected and session.hits == hits and session.query_hit is None
    with pytest.raises(ValueError, match="no hit 9: the gallery shows 4"):
        ex.hit_at(session, 8)


def test_opening_a_hit_whose_file_is_gone_names_the_file(explorer, tmp_path):
    moved = Path(shutil.copytree(explorer.index.data_root, tmp_path / "moved"))
    index = open_relocated(
        explorer.index.path, moved, checkpoint_hash=explorer.predictor.checkpoint_hash
    )
    hit = index.search(index.region_vector("img3.png", 1, 2), k=1, levels=[1])[0]
    (moved / hit.image).unlink()
    with pytest.raises(ValueError, match=f"{hit.image}: not in the data folder any more"):
        ex.open_hit(index, ex.Session(), hit)


def test_find_more_like_this_searches_with_the_hits_vector_without_the_hit(explorer):
    session = searched(explorer, one_per_image=False)
    selected, hit = session.selected, session.hits[0]
    session, items = ex.more_like_hit(explorer.index, session, hit, k=3, one_per_image=False)
    assert len(items) == len(session.hits) == 3 and session.query_hit == hit
    assert all(h.level == hit.level and h.image != hit.image for h in session.hits)
    vector = explorer.index.region_vector(hit.image, hit.level, hit.region)
    want = explorer.index.search(vector, k=3, levels=[hit.level], exclude_image=hit.image)
    assert [h.id for h in session.hits] == [h.id for h in want]
    assert session.selected == selected  # the click's selection stays
    session, _, again = ex.rerun(explorer.index, session, 5, True, True)  # repeats this search
    chain = ex.hit_chain(explorer.index, hit)
    assert sorted(chain) == list(range(hit.level, explorer.index.num_levels))
    assert {h.level for h in session.hits} == set(chain) and session.query_hit == hit
    assert all(h.image != hit.image for h in session.hits)
    session, _, _ = ex.select_region(explorer.index, session, 0, 3, k=2)
    assert session.query_hit is None  # a new selection is the query again


def test_a_bad_uploaded_array_is_named_in_its_error():
    with pytest.raises(ValueError, match="^uploaded image"):
        ex.set_image(GridPredictor(), np.zeros((4, 4, 5), np.uint8))
