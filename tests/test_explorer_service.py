"""explorer_service.py: what sessions share and how they start — uploads, open-or-build, the shipped
index at startup, the allowed data folders."""

import shutil
from pathlib import Path

import pytest

import explorer as ex
import explorer_service as svc
from index import CheckpointMismatchError, DataRootMismatchError
from index.managed import managed_index_dir, open_or_build, open_relocated
from tests.conftest import tree_digest, write_shapes_images
from tests.fakes import GridPredictor


def test_an_uploaded_copy_of_an_indexed_photo_is_not_its_own_hit(explorer, tmp_path):
    upload = Path(
        shutil.copy(explorer.examples[2], tmp_path / "upload.png")
    )  # gradio's cache: another name
    session = svc.open_upload(explorer, upload)
    _, _, _ = ex.select_at(explorer.index, session, 5, 5, 3, k=5, one_per_image=False)
    assert session.hits and all(h.image != "img2.png" for h in session.hits)
    assert session.source == "img2.png"  # found by its bytes, not its name
    session.source = ""  # the same search without the content match: the photo finds itself first
    top = ex.query_hits(explorer.index, session, 3, 0, k=1, every_level=False, one_per_image=False)[
        3
    ][0]
    assert top.image == "img2.png" and top.score == pytest.approx(1.0, abs=1e-5)


def test_open_or_build_opens_builds_and_rebuilds_only_what_it_manages(tmp_path):
    data = write_shapes_images(tmp_path / "data", [(48, 64)] * 2)
    predictor, notes = GridPredictor(), []
    out = managed_index_dir(tmp_path / "cache", data, predictor.checkpoint_hash)
    built = open_or_build(
        data, out, svc.index_extractor(predictor), checkpoint_hash="a" * 64, note=notes.append
    )
    assert len(built.images()) == 2 and notes[-1].startswith("indexing ")
    before = tree_digest(out)
    with pytest.raises(CheckpointMismatchError):
        open_or_build(data, out, svc.index_extractor(predictor), checkpoint_hash="b" * 64)
    assert tree_digest(out) == before
    rebuilt = open_or_build(
        data,
        out,
        svc.index_extractor(predictor),
        checkpoint_hash="b" * 64,
        managed=True,
        note=notes.append,
    )
    assert rebuilt.manifest["checkpoint_hash"] == "b" * 64 and any(
        n.startswith("rebuilding") for n in notes
    )


def test_a_shipped_index_opens_from_a_moved_copy_of_its_images_only_if_unchanged(
    explorer, tmp_path
):
    moved = Path(shutil.copytree(explorer.index.data_root, tmp_path / "moved"))
    index = open_relocated(
        explorer.index.path, moved, checkpoint_hash=explorer.predictor.checkpoint_hash
    )
    assert index.data_root == moved and len(index) == len(explorer.index)
    (moved / "img1.png").write_bytes((moved / "img0.png").read_bytes())
    with pytest.raises(DataRootMismatchError, match="as they are now"):
        open_relocated(
            explorer.index.path, moved, checkpoint_hash=explorer.predictor.checkpoint_hash
        )


def test_startup_uses_the_shipped_index_and_rebuilds_into_the_cache_when_it_does_not_fit(
    explorer, tmp_path, monkeypatch
):
    monkeypatch.setattr(svc, "DEFAULT_IMAGES", explorer.index.data_root)
    monkeypatch.setattr(svc, "SHIPPED_INDEX", explorer.index.path)
    notes = []
    data = explorer.index.data_root.resolve()
    shipped = svc.startup_index(explorer.predictor, data, None, tmp_path / "cache", notes.append)
    assert shipped.path == explorer.index.path and not (tmp_path / "cache").exists()

    class OtherModel(GridPredictor):
        checkpoint_hash = "0" * 64

    rebuilt = svc.startup_index(OtherModel(), data, None, tmp_path / "cache", notes.append)
    assert rebuilt.path == managed_index_dir(tmp_path / "cache", data, "0" * 64)
    assert any("does not fit" in n for n in notes) and any(n.startswith("indexing") for n in notes)


def test_folder_outside_roots_is_refused(explorer, tmp_path):
    root = explorer.data_roots[0]
    assert svc.resolve_folder(str(root), explorer.data_roots) == root.resolve()
    for bad in ("/etc", str(root / ".." / ".."), ""):
        with pytest.raises(ValueError):
            svc.resolve_folder(bad, explorer.data_roots)
    (root / "escape").symlink_to(tmp_path)
    with pytest.raises(ValueError, match="outside the allowed data roots"):
        svc.resolve_folder(str(root / "escape"), explorer.data_roots)
    (root / "escape").unlink()
