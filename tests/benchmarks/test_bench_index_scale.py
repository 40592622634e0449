"""The scale benchmark (issue 14) runs end to end at a tiny size and reports what it claims to."""

from __future__ import annotations

import json

from benchmarks.bench_index import main


def test_scale_mode_reports_open_rss_recall_latency_and_disk_per_factory(tmp_path):
    out = tmp_path / "scale.json"
    main(
        [
            "--scale",
            "--sizes",
            "2000",
            "--queries",
            "5",
            "--factories",
            "Flat",
            "IVF16,SQ8",
            "--work",
            str(tmp_path),
            "--out",
            str(out),
        ]
    )
    report = json.loads(out.read_text())
    assert report["machine"]["cores"] >= 1
    flat, sq8 = report["scale"]
    assert (flat["factory"], sq8["factory"]) == ("Flat", "IVF16,SQ8")
    assert flat["recall_at_10_vs_exact"] == 1.0  # exact search against exact search
    assert sq8["vectors_memory_mapped"] and not flat["vectors_memory_mapped"]
    for row in (flat, sq8):
        assert row["regions"] == 2000 and row["rss_after_open_bytes"] > row["rss_before_open_bytes"]
        assert 0 < row["click_p50_ms"] <= row["click_p95_ms"]
        assert row["disk_bytes_per_region"] > 512  # float32 128-d vectors alone are 512 B
    assert (
        sq8["disk_bytes_per_region_by_file"]["index"]
        < flat["disk_bytes_per_region_by_file"]["index"]
    )
    assert list(tmp_path.glob("bench_index_*/scale_*")) == []  # generated indexes are deleted
