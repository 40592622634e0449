"""explorer_output.py: the parts-to-whole strip and the sunburst in the hierarchy's colours."""

import numpy as np

import explorer as ex
import explorer_output as output
from hsg_core.viz import inner_band, outline_width


def clicked(explorer, x: int, y: int, level: int) -> ex.Session:
    image = np.zeros((40, 160, 3), np.uint8)
    image[:, 80:] = 255
    session, _, _ = ex.select_at(
        explorer.index, ex.set_image(explorer.predictor, image), x, y, level
    )
    return session


def contains(outer, inner) -> bool:
    return (
        outer[0] <= inner[0]
        and outer[1] <= inner[1]
        and inner[2] <= outer[2]
        and inner[3] <= outer[3]
    )


def test_the_strip_has_a_panel_per_level_around_the_clicked_pixels_region(explorer):
    session = clicked(explorer, 150, 35, 2)
    pred, colours = session.prediction, ex.level_colours(session.prediction)
    panels = output.parts_strip(session)
    assert [p.level for p in panels] == [0, 1, 2, 3]
    assert [p.region for p in panels] == pred.chain_at(150, 35) == [63, 15, 3, 0]
    for panel in panels:
        level = pred.levels[panel.level]
        x0, y0, x1, y1 = panel.box
        assert contains(panel.box, tuple(level.boxes[panel.region])) and x0 <= 150 < x1
        assert panel.crop.shape == (y1 - y0, x1 - x0, 3) and y0 <= 35 < y1
        mask = level.label_map[y0:y1, x0:x1] == panel.region
        outline = np.all(panel.crop == colours[panel.level][panel.region], axis=-1)
        assert np.array_equal(outline, inner_band(mask, outline_width(mask.shape)))
        assert (
            panel.area == int(level.areas[panel.region]) and f"{panel.area:,} px" in panel.caption
        )
    assert all(contains(b.box, a.box) for a, b in zip(panels, panels[1:]))  # nested growth
    assert [p.area for p in panels] == sorted(p.area for p in panels) and panels[-1].share == 1.0


def test_the_strip_is_empty_before_a_selection(explorer):
    assert output.parts_strip(ex.Session()) == []
    image = np.zeros((40, 160, 3), np.uint8)
    assert output.parts_strip(ex.set_image(explorer.predictor, image)) == []


def test_the_sunburst_takes_the_colours_of_the_overlay(explorer):
    session = clicked(explorer, 3, 3, 0)
    colours = ex.level_colours(session.prediction)
    marker = output.hierarchy_figure(session).data[0]
    for node, colour in zip(marker.ids, marker.marker.colors):
        level, region = (int(v) for v in node[1:].split("-"))
        assert colour == "rgb({},{},{})".format(*colours[level][region])


def test_export_folders_survive_sessions_sweeping_the_same_stale_folders(monkeypatch, tmp_path):
    """Two sessions sweeping stale export folders at once: one's stat may find the folder gone."""
    import os
    import threading

    import explorer_output

    monkeypatch.setattr(explorer_output.tempfile, "tempdir", str(tmp_path))
    exports = tmp_path / "hsg-exports"
    exports.mkdir()
    for i in range(200):
        stale = exports / f"export-old{i}"
        stale.mkdir()
        os.utime(stale, (0, 0))
    errors: list[BaseException] = []

    def sweep() -> None:  # what export_folder runs; processes sharing the temp dir race here
        try:
            explorer_output.remove_stale(exports, before=1.0)
        except BaseException as err:  # noqa: BLE001 - collected for the assertion
            errors.append(err)

    threads = [threading.Thread(target=sweep) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and not list(exports.glob("export-old*"))
    fresh = [explorer_output.export_folder() for _ in range(3)]
    assert len(set(fresh)) == 3 and sorted(exports.iterdir()) == sorted(fresh)  # one per call


def test_export_folder_sweeps_at_most_once_a_minute(monkeypatch, tmp_path):
    """Every click writes through export_folder: the stale-folder sweep must not run on each."""
    import os

    import explorer_output

    monkeypatch.setattr(explorer_output.tempfile, "tempdir", str(tmp_path))
    swept: list[float] = []
    monkeypatch.setattr(
        explorer_output, "remove_stale", lambda folder, before: swept.append(before)
    )
    clock = [10_000.0]
    monkeypatch.setattr(explorer_output.time, "time", lambda: clock[0])
    explorer_output.export_folder()
    explorer_output.export_folder()
    clock[0] += explorer_output.SWEEP_EVERY_S
    explorer_output.export_folder()
    assert swept == [10_000.0 - explorer_output.CACHE_TTL_S, clock[0] - explorer_output.CACHE_TTL_S]
    assert len(os.listdir(tmp_path / "hsg-exports")) == 3
