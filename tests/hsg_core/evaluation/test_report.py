import json
import math

import numpy as np

from hsg_core.evaluation.report import finite, to_markdown, write_report


def covering_summary(value: float) -> dict:
    return {
        "images": 1,
        "levels": [{"level": 0, "covering": value, "nf_covering": math.nan, "mean_regions": 3.0}],
        "covering_ods": value,
        "ods_level": 0,
        "covering_ois": value,
        "nf_covering_best": None,
        "nf_covering_best_level": None,
    }


def sample_report() -> dict:
    transfer = [
        {
            "level": 0,
            "memory_prototypes": 4,
            "knn": {"miou": np.float64(50.0), "pixel_accuracy": 75.0},
            "hungarian": {"miou": math.nan, "pixel_accuracy": 60.0},
        }
    ]
    return {
        "title": "test",
        "dataset": {"name": "x"},
        "checkpoint": "c.pt",
        "hardware": {"cores": 2},
        "wall_seconds": 1.5,
        "results": {
            "covering": {"hsg": covering_summary(0.5), "slic": covering_summary(0.25)},
            "num_classes": 3,
            "k": 20,
            "label_transfer": transfer,
            "seconds": {"hsg": 1.0},
        },
    }


def test_finite_turns_nan_into_null():
    assert finite({"a": [math.nan, np.float32(2.0)], "b": np.int64(3)}) == {
        "a": [None, 2.0],
        "b": 3,
    }


def test_write_report_is_atomic_json_and_markdown(tmp_path):
    json_path, md_path = write_report(sample_report(), tmp_path / "out", "run")
    data = json.loads(json_path.read_text())
    assert data["results"]["covering"]["hsg"]["levels"][0]["nf_covering"] is None
    assert data["results"]["label_transfer"][0]["hungarian"]["miou"] is None
    text = md_path.read_text()
    assert (
        "| hsg | 0.500 (L0) | 0.500 | – |" in text and "| 0 | 4 | 50.0 | 75.0 | – | 60.0 |" in text
    )
    assert not list((tmp_path / "out").glob("*.part"))


def test_markdown_without_labels_has_no_semantic_section():
    report = sample_report()
    del report["results"]["label_transfer"]
    assert "Semantic labels" not in to_markdown(finite(report))


def test_markdown_lists_methods_with_different_level_counts():
    from hsg_core.evaluation.report import covering_tables

    def summary(levels):
        return {
            "covering_ods": 0.5,
            "ods_level": 0,
            "covering_ois": 0.6,
            "nf_covering_best": None,
            "nf_covering_best_level": None,
            "levels": [
                {"mean_regions": 10.0 / (lv + 1), "covering": 0.5, "nf_covering": None}
                for lv in range(levels)
            ],
        }

    lines = covering_tables({"hsg": summary(2), "hsg:deeper": summary(4)})
    assert "| 3 | hsg:deeper | 2.5 | 0.500 | – |" in lines and not any(
        line.startswith("| 3 | hsg |") for line in lines
    )


def test_curve_table_shows_every_hierarchy_at_the_same_counts():
    from hsg_core.evaluation.report import CURVE_COLUMNS, curve_table

    scale = [2, 3, 4, 8, 16, 32, 64, 128]
    covering = [0.1 * i for i in range(len(scale))]
    curves = {
        "hsg": {
            "unit": "regions",
            "scale": scale,
            "covering": covering,
            "ods": 0.7,
            "ods_at": 128,
            "ois": 0.75,
        },
        "gpb (thresholds)": {
            "unit": "threshold",
            "scale": [0.1, 0.2],
            "covering": [0.3, 0.4],
            "ods": 0.4,
            "ods_at": 0.2,
            "ois": 0.45,
        },
    }
    lines = curve_table(curves)
    assert CURVE_COLUMNS == (64, 32, 16, 8, 4, 2)
    # 64 -> 0.6, 32 -> 0.5, 16 -> 0.4, 8 -> 0.3, 4 -> 0.2, 2 -> 0.0; mean 2.0 / 6
    assert (
        "| hsg | regions | 0.700 (128) | 0.750 | 0.600 | 0.500 | 0.400 | 0.300 | 0.200 | 0.000 | 0.333 |"
        in lines
    )
    assert (
        "| gpb (thresholds) | threshold | 0.400 (0.2) | 0.450 | – | – | – | – | – | – | – |"
        in lines
    )
