"""The README's Quality tables are what the committed evaluation reports say (issue 11)."""

from __future__ import annotations

import json
import shutil

import pytest

from benchmarks import quality_readme as q


def test_the_readme_tables_equal_a_rendering_of_the_committed_reports(tmp_path):
    readme = tmp_path / "README.md"
    shutil.copyfile(q.ROOT / "README.md", readme)
    q.main(["--readme", str(readme)])
    assert readme.read_text() == (q.ROOT / "README.md").read_text(), (
        "README Quality tables differ from benchmarks/results: run python benchmarks/quality_readme.py"
    )


def test_tables_show_the_report_figures():
    bsds = json.loads((q.RESULTS / "bsds_val.json").read_text())
    hsg = bsds["results"]["covering"]["hsg"]
    levels = q.levels_table(bsds).splitlines()
    assert levels[0].startswith("| method | L0 (") and len(levels) == 2 + len(q.LEVEL_ROWS)
    assert f"**{hsg['levels'][0]['covering']:.3f}**" in levels[2]
    assert levels[2].endswith(
        f"| {hsg['covering_ods']:.3f} (L{hsg['ods_level']}) | {hsg['covering_ois']:.3f} |"
    )
    curve = bsds["results"]["curves"]["hsg"]
    at = dict(zip(curve["scale"], curve["covering"]))
    mean = sum(at[n] for n in q.SCALE_COLUMNS) / len(q.SCALE_COLUMNS)
    assert q.scale_table(bsds).splitlines()[2].endswith(f"| {mean:.3f} |")
    retrieval = json.loads((q.RESULTS / "retrieval.json").read_text())
    last = q.retrieval_table(retrieval).splitlines()[-1]
    assert last.startswith(f"| all | {retrieval['results']['all']['queries']} |")


def test_a_readme_without_the_markers_is_refused():
    with pytest.raises(ValueError, match="no <!-- quality:levels -->"):
        q.replace_block("# README\n", "levels", "| table |")


def test_run_exports_the_ablations_and_runs_both_evaluations(tmp_path, monkeypatch):
    import cli

    calls = []

    def fake_main(argv):
        calls.append(argv)
        if argv[:2] == ["eval", "retrieval"]:
            out = tmp_path / "retrieval_val"
            out.mkdir()
            for suffix in (".json", ".md"):
                (out / f"retrieval{suffix}").write_text("{}")
        return 0

    monkeypatch.setattr(cli, "main", fake_main)
    monkeypatch.setattr(q, "RESULTS", tmp_path / "results")
    (tmp_path / "results").mkdir()
    q.run_evaluations(tmp_path / "BSDS500", tmp_path)
    exports = [c for c in calls if c[0] == "export"]
    assert len(exports) == len(q.ABLATIONS)
    assert ["--set", "contour.region_semantic=0.0"] == exports[2][3:]
    bsds = next(c for c in calls if c[:2] == ["eval", "bsds"])
    assert bsds.count("--compare") == len(q.ABLATIONS) and "--split" in bsds
    assert (tmp_path / "results" / "retrieval.json").read_text() == "{}"
