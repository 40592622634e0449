"""atomic_write: all-or-nothing replacement, no leftovers, the usual file mode."""

import os
import stat

import pytest

from hsg_files import FILE_MODE, atomic_write, atomic_write_text, remove_stale_parts


def test_replaces_content_and_leaves_no_temp_files(tmp_path):
    target = tmp_path / "sub" / "report.json"
    atomic_write_text(target, "old")
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["report.json"]


def test_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "checkpoint.pt"
    atomic_write_text(target, "complete")

    def half_then_fail(fh):
        fh.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, half_then_fail)
    assert target.read_text() == "complete"
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_file_mode_follows_umask_not_mkstemp(tmp_path):
    target = atomic_write_text(tmp_path / "shared.txt", "x")
    assert stat.S_IMODE(target.stat().st_mode) == FILE_MODE
    plain = tmp_path / "plain.txt"
    plain.write_text("x")  # what open() gives under the same umask
    assert FILE_MODE == stat.S_IMODE(plain.stat().st_mode)


def test_remove_stale_parts_only_touches_that_file(tmp_path):
    (tmp_path / "a.pt.123.part").write_text("stale")
    (tmp_path / "b.pt.123.part").write_text("other file's")
    remove_stale_parts(tmp_path / "a.pt")
    assert sorted(os.listdir(tmp_path)) == ["b.pt.123.part"]
