"""Building, resuming, updating and sharding: each must give the same index as a plain build."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from index import (
    CheckpointMismatchError,
    IndexBusyError,
    IndexFormatError,
    SegmentIndex,
    build_index,
    merge_shards,
    update_index,
)
from index.dataset import list_images
from index.synthetic import SyntheticExtractor

REPO = Path(__file__).resolve().parents[2]
NAMES = [f"{'a' if i % 2 else 'b'}/img{i:03d}.png" for i in range(22)]


def silent(done: int, total: int) -> None:
    """Progress callback that draws nothing."""


def build(data: Path, out: Path, checkpoint: str, extract=None, **kwargs) -> dict:
    kwargs.setdefault("batch_size", 2)
    kwargs.setdefault("shard_images", 4)
    return build_index(
        data,
        out,
        extract or SyntheticExtractor(),
        checkpoint_hash=checkpoint,
        progress=silent,
        **kwargs,
    )


def assert_same_index(read_content, first: Path, second: Path, same_ids: bool = True) -> None:
    meta_a, vec_a, ids_a = read_content(first)
    meta_b, vec_b, ids_b = read_content(second)
    pd.testing.assert_frame_equal(meta_a, meta_b)
    np.testing.assert_array_equal(vec_a, vec_b)
    if same_ids:
        np.testing.assert_array_equal(ids_a, ids_b)


@pytest.fixture
def data(tmp_path, make_images) -> Path:
    make_images(tmp_path / "data", NAMES)
    return tmp_path / "data"


@pytest.fixture
def reference(tmp_path, data, checkpoint) -> Path:
    build(data, tmp_path / "reference", checkpoint)
    return tmp_path / "reference"


def test_kill_9_mid_build_then_resume_equals_uninterrupted(
    tmp_path, data, reference, checkpoint, read_content
):
    script = textwrap.dedent(
        """
        import os, sys, time
        from pathlib import Path
        from index import build_index
        from index.synthetic import SyntheticExtractor

        inner = SyntheticExtractor()

        def extract(paths):
            if inner.calls == 5:  # shards 0 and 1 extracted; give the writer thread a moment
                time.sleep(0.3)
                os._exit(9)
            return inner(paths)

        build_index(Path(sys.argv[1]), Path(sys.argv[2]), extract, checkpoint_hash=sys.argv[3],
                    batch_size=2, shard_images=4, progress=lambda done, total: None)
        """
    )
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-c", script, str(data), str(out), checkpoint],
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert result.returncode == 9, result.stderr.decode()[-2000:]
    assert not (out / "manifest.json").exists()
    committed = sorted(p.name for p in (out / "pending").glob("shard_*.parquet"))
    # shards are written by a background thread: the kill may land before shard 1 is written
    assert committed in (["shard_00000.parquet"], ["shard_00000.parquet", "shard_00001.parquet"])
    resumed = SyntheticExtractor()
    manifest = build(data, out, checkpoint, resumed)
    assert manifest["status"] == "complete" and resumed.images_seen == len(NAMES) - 4 * len(
        committed
    )
    assert not (out / "pending").exists()
    assert_same_index(read_content, reference, out)


def test_ctrl_c_and_stop_request_then_resume(tmp_path, data, reference, checkpoint, read_content):
    inner = SyntheticExtractor()

    def interrupted(paths):
        if inner.calls == 3:
            raise KeyboardInterrupt
        return inner(paths)

    out = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        build(data, out, checkpoint, interrupted)
    polls = iter(range(100))
    status = build(data, out, checkpoint, should_stop=lambda: next(polls) >= 2)
    assert status["status"] == "stopped" and status["images_done"] < len(NAMES)
    assert build(data, out, checkpoint)["status"] == "complete"
    assert_same_index(read_content, reference, out)


@pytest.mark.parametrize("crash_point", ["write_json", "remove_pending"])
def test_crash_while_committing_then_rerun(
    tmp_path, data, reference, checkpoint, read_content, monkeypatch, crash_point
):
    import index.commit as commit

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    out = tmp_path / "commit_crash"
    monkeypatch.setattr(commit, crash_point, crash)
    with pytest.raises(KeyboardInterrupt):
        build(data, out, checkpoint)
    monkeypatch.undo()
    again = SyntheticExtractor()
    assert build(data, out, checkpoint, again)["status"] == "complete"
    assert again.images_seen == 0  # every shard was committed before the crash
    assert_same_index(read_content, reference, out)
    assert sorted(p.name for p in out.iterdir()) == [
        "index-g0001.faiss",
        "manifest.json",
        "metadata-g0001.parquet",
        "vectors-g0001.npy",
    ]


def test_two_rank_build_and_merge_equals_single_build(
    tmp_path, data, reference, checkpoint, read_content
):
    out = tmp_path / "sharded"
    rank0, rank1 = SyntheticExtractor(), SyntheticExtractor()
    status = build(data, out, checkpoint, rank0, rank=0, world_size=2)
    assert status["status"] == "shards_done" and not (out / "manifest.json").exists()
    with pytest.raises(IndexFormatError, match="shard_00001.parquet"):
        merge_shards(out)
    status = build(data, out, checkpoint, rank1, rank=1, world_size=2)
    assert status["status"] == "shards_done"
    assert rank0.images_seen + rank1.images_seen == len(NAMES) and rank0.images_seen == 12
    assert merge_shards(out)["status"] == "complete"
    assert merge_shards(out)["generation"] == 1  # idempotent once committed
    assert_same_index(read_content, reference, out)


@pytest.mark.parametrize("factory", [None, "IVF4,Flat"])
def test_update_after_add_remove_change_equals_fresh_build(
    tmp_path, data, checkpoint, read_content, make_images, factory
):
    out = tmp_path / "updated"
    build(data, out, checkpoint, factory=factory)
    before = SegmentIndex.open(out).metadata
    (data / NAMES[0]).unlink()
    (data / NAMES[5]).unlink()
    make_images(data, [NAMES[1], NAMES[2]], seed=99)  # new content under old names
    make_images(data, ["c/new0.JPG", "c/new1.tif", "a/img900.png"], seed=5)
    extractor = SyntheticExtractor()
    manifest = update_index(
        data, out, extractor, checkpoint_hash=checkpoint, progress=silent, shard_images=2
    )
    assert extractor.images_seen == 5 and manifest["generation"] == 2
    fresh = tmp_path / "fresh"
    build(data, fresh, checkpoint, factory=factory)
    assert_same_index(read_content, fresh, out, same_ids=False)
    after = SegmentIndex.open(out).metadata
    kept = before[~before["image"].isin([NAMES[i] for i in (0, 1, 2, 5)])]
    assert set(kept["id"]) <= set(after["id"])  # unchanged images keep their ids
    assert not set(before["id"][before["image"] == NAMES[1]]) & set(after["id"])
    assert sorted(p.name for p in out.iterdir())[0] == "index-g0002.faiss"
    query = SegmentIndex.open(fresh).region_vector("c/new0.JPG", 1, 3)
    keys = [
        [
            (h.image, h.level, h.region, round(h.score, 5))
            for h in SegmentIndex.open(d).search(query, 15)
        ]
        for d in (out, fresh)
    ]
    assert keys[0] == keys[1]
    unchanged = SyntheticExtractor()
    assert (
        update_index(data, out, unchanged, checkpoint_hash=checkpoint, progress=silent)[
            "generation"
        ]
        == 2
    )
    assert unchanged.calls == 0


def test_bad_images_are_recorded_logged_once_and_not_retried(
    tmp_path, data, checkpoint, make_images, caplog
):
    make_images(data, ["bad/broken.png", "bad/crash.png", "bad/wrong.png"])
    inner = SyntheticExtractor()

    def extract(paths):
        if any(p.name == "crash.png" for p in paths):
            raise RuntimeError("decoder crashed")  # whole batch raises: retried image by image
        results = inner(paths)
        for number, path in enumerate(paths):
            if path.name == "broken.png":
                results[number] = OSError("cannot identify image file")
            if path.name == "wrong.png":
                results[number].levels[0].areas = results[number].levels[0].areas + 1
        return results

    caplog.set_level(logging.WARNING, logger="index")
    manifest = build(data, tmp_path / "out", checkpoint, extract)
    skipped = {r["image"]: r["error"] for r in manifest["skipped"]}
    assert skipped == {
        "bad/broken.png": "OSError: cannot identify image file",
        "bad/crash.png": "RuntimeError: decoder crashed",
        "bad/wrong.png": skipped["bad/wrong.png"],
    }
    assert (
        "bad/wrong.png: level 0: region 0 has 96 pixels, area says 97" in skipped["bad/wrong.png"]
    )
    assert manifest["counts"]["images"] == len(NAMES)
    assert sum("skipping bad/broken.png" in r.getMessage() for r in caplog.records) == 1
    retry = SyntheticExtractor()
    manifest = update_index(
        data, tmp_path / "out", retry, checkpoint_hash=checkpoint, progress=silent
    )
    assert retry.calls == 0 and len(manifest["skipped"]) == 3


def test_resume_or_update_with_another_checkpoint_is_refused(tmp_path, data, checkpoint):
    out = tmp_path / "out"
    assert build(data, out, checkpoint, should_stop=lambda: True)["status"] == "stopped"
    with pytest.raises(CheckpointMismatchError, match=r"pending/plan.json: built with checkpoint"):
        build(data, out, "another-checkpoint")
    build(data, out, checkpoint)
    with pytest.raises(CheckpointMismatchError, match="manifest.json"):
        update_index(data, out, SyntheticExtractor(), checkpoint_hash="another-checkpoint")
    with pytest.raises(FileExistsError, match="already holds a finished index"):
        build(data, out, checkpoint)


def test_bad_arguments(tmp_path, data, checkpoint):
    with pytest.raises(FileNotFoundError, match="data folder not found"):
        build(tmp_path / "nowhere", tmp_path / "out", checkpoint)
    with pytest.raises(ValueError, match="rank 2 outside"):
        build(data, tmp_path / "out", checkpoint, rank=2, world_size=2)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no image files"):
        build(tmp_path / "empty", tmp_path / "out2", checkpoint)
    with pytest.raises(ValueError, match="use 'Flat' or an 'IVF"):
        build(data, tmp_path / "out3", checkpoint, factory="HNSW32")


def test_image_listing_is_sorted_case_insensitive_and_survives_link_loops(tmp_path, make_images):
    root = tmp_path / "root"
    make_images(
        root, ["b/x.PNG", "a/y.jpeg", "a/z.Tiff", "a/deep/w.webp", "c.bmp", "notes.txt", "a/q.gif"]
    )
    (root / "a" / "loop").symlink_to(root, target_is_directory=True)
    make_images(tmp_path / "outside", ["o.jpg"])
    (root / "linked").symlink_to(tmp_path / "outside", target_is_directory=True)
    assert list_images(root) == [  # linked/o.jpg leads out of the root (issue 13): not listed
        "a/deep/w.webp",
        "a/q.gif",
        "a/y.jpeg",
        "a/z.Tiff",
        "b/x.PNG",
        "c.bmp",
    ]


def test_update_can_switch_factory_and_default_progress_is_a_bar(
    tmp_path, data, checkpoint, read_content, capsys
):
    out = tmp_path / "out"
    build_index(data, out, SyntheticExtractor(), checkpoint_hash=checkpoint, shard_images=8)
    assert "img/s" in capsys.readouterr().err  # tqdm bar with rate and ETA when progress is None
    manifest = update_index(
        data, out, SyntheticExtractor(), checkpoint_hash=checkpoint, factory="IVF4,Flat"
    )
    assert manifest["factory"] == "IVF4,Flat" and manifest["generation"] == 2
    assert SegmentIndex.open(out).info()["nprobe"] == 4
    fresh = tmp_path / "fresh"
    build(data, fresh, checkpoint)
    assert_same_index(read_content, fresh, out)


def test_a_second_job_on_a_busy_index_folder_fails_at_once_and_the_first_ends_intact(
    tmp_path, data, reference, checkpoint, read_content
):
    """Issue 13 item 7: two jobs on one --out both did all the work, one failed on a temp path."""
    out = tmp_path / "out"
    started, release = threading.Event(), threading.Event()
    inner = SyntheticExtractor()

    def held(paths):  # the first build holds the folder until the second writers have failed
        started.set()
        release.wait(60)
        return inner(paths)

    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(build, data, out, checkpoint, held)
        assert started.wait(60)
        second = SyntheticExtractor()
        busy = rf"^{re.escape(str(out))}: another build, update or merge is running"
        with pytest.raises(IndexBusyError, match=busy):
            build(data, out, checkpoint, second)
        with pytest.raises(IndexBusyError, match=busy):
            update_index(data, out, second, checkpoint_hash=checkpoint, progress=silent)
        with pytest.raises(IndexBusyError, match=busy):
            merge_shards(out)
        release.set()
        assert first.result(timeout=120)["status"] == "complete"
    assert second.calls == 0  # the second writer did no work
    assert_same_index(read_content, reference, out)
    assert (
        update_index(data, out, second, checkpoint_hash=checkpoint, progress=silent)["status"]
        == "complete"
    )  # the folder is free again once the first job has ended


def test_a_job_that_indexes_nothing_does_not_wedge_the_folder(tmp_path, data, checkpoint):
    """Issue 13 item 6: pending/ stayed and every later run failed with the old reason."""
    out = tmp_path / "out"

    def all_bad(paths):
        return [OSError("cannot identify image file") for _ in paths]

    with pytest.raises(ValueError, match=r"nothing to index \(22 image\(s\) skipped"):
        build(data, out, checkpoint, all_bad)
    assert build(data, out, checkpoint)["status"] == "complete"  # the images are readable now
    kept = data / NAMES[0]
    kept_bytes = kept.read_bytes()
    for name in NAMES:
        (data / name).unlink()
    with pytest.raises(ValueError, match=r"nothing to index"):  # an update that removes everything
        update_index(data, out, SyntheticExtractor(), checkpoint_hash=checkpoint, progress=silent)
    kept.write_bytes(kept_bytes)
    manifest = update_index(
        data, out, SyntheticExtractor(), checkpoint_hash=checkpoint, progress=silent
    )
    assert manifest["status"] == "complete" and manifest["counts"]["images"] == 1


@pytest.mark.parametrize("kind", ["build", "update"])
def test_a_job_resumed_after_the_folder_changed_covers_the_folder_as_it_is(
    tmp_path, data, checkpoint, read_content, make_images, kind
):
    """Issue 13 item 6: a resumed build ignored files added or removed while it was paused."""
    out = tmp_path / "out"
    if kind == "update":
        build(data, out, checkpoint)
        make_images(data, [f"d/more{i}.png" for i in range(9)], seed=3)
    polls = iter(range(100))
    stop_soon = lambda: next(polls) >= 3  # noqa: E731 - two batches, one shard committed
    if kind == "build":
        status = build(data, out, checkpoint, should_stop=stop_soon)
    else:
        status = update_index(
            data,
            out,
            SyntheticExtractor(),
            checkpoint_hash=checkpoint,
            progress=silent,
            shard_images=4,
            batch_size=2,
            should_stop=stop_soon,
        )
    assert status["status"] == "stopped"
    (data / NAMES[0]).unlink()  # extracted before the pause
    (data / NAMES[-1]).unlink()  # not extracted yet
    make_images(data, ["c/added0.png", "c/added1.png"], seed=7)
    make_images(data, [NAMES[3]], seed=11)  # new content under an old name
    if kind == "build":
        manifest = build(data, out, checkpoint)
    else:
        manifest = update_index(
            data, out, SyntheticExtractor(), checkpoint_hash=checkpoint, progress=silent
        )
    assert manifest["status"] == "complete"
    assert SegmentIndex.open(out).images() == list_images(data)
    build(data, tmp_path / "fresh", checkpoint)
    assert_same_index(read_content, tmp_path / "fresh", out, same_ids=False)


def test_a_pending_job_that_cannot_be_resumed_is_named_with_the_command_that_discards_it(
    tmp_path, data, checkpoint, make_images, run_hsg
):
    """Issue 13 item 6: the error must name pending/ and the command that clears it."""
    out = tmp_path / "out"
    make_images(tmp_path / "other", ["x.png", "y.png"])
    assert build(data, out, checkpoint, should_stop=lambda: True)["status"] == "stopped"
    discard = re.escape(f"`hsg index discard {out}`")
    with pytest.raises(
        IndexFormatError, match=rf"pending/plan.json: a pending build indexes .*{discard}"
    ):
        build(tmp_path / "other", out, checkpoint)
    with pytest.raises(CheckpointMismatchError, match=rf"pending/plan.json: .*{discard}"):
        build(data, out, "another-checkpoint")
    (out / "pending" / "plan.json").write_text("{not json")
    with pytest.raises(IndexFormatError, match=rf"pending/plan.json: .*{discard}"):
        build(data, out, checkpoint)
    code, printed, _ = run_hsg("index", "discard", out)
    assert code == 0 and str(out / "pending") in printed
    assert build(tmp_path / "other", out, checkpoint)["counts"]["images"] == 2


def stopped_after_one_shard(data: Path, out: Path, checkpoint: str) -> Path:
    """A build stopped once shard 0 is committed; returns that shard's file."""
    polls = iter(range(100))
    assert build(data, out, checkpoint, should_stop=lambda: next(polls) >= 2)["status"] == "stopped"
    return out / "pending" / "shard_00000.parquet"


def test_a_flipped_byte_in_a_pending_shard_is_refused_at_commit(
    tmp_path, data, checkpoint, run_hsg
):
    """Issue 13 item 5: 4 bytes in a pending shard committed a vector of norm 362."""
    out = tmp_path / "out"
    shard = stopped_after_one_shard(data, out, checkpoint)
    content = bytearray(shard.read_bytes())
    content[len(content) // 3] ^= 0xFF
    shard.write_bytes(bytes(content))
    with pytest.raises(IndexFormatError, match=rf"^{re.escape(str(shard))}: shard file .*damaged"):
        build(data, out, checkpoint)
    assert not (out / "manifest.json").exists()
    shard.unlink()  # as the message says: its images are extracted again
    assert build(data, out, checkpoint)["status"] == "complete"


@pytest.mark.parametrize(
    "damage, message", [("nan", "values that are not finite"), ("x362", "norm 362")]
)
def test_a_vector_that_is_not_a_finite_unit_vector_is_refused_at_commit(
    tmp_path, data, checkpoint, damage, message
):
    """Issue 13 item 5: one NaN made every click fail; a norm-362 vector became the top hit.
    Here the shard is written whole, with its checksum, as a faulty extractor would write it."""
    import pyarrow as pa

    from index.records import VECTOR_COLUMN, split_vectors
    from index.shards import read_shard, write_shard

    out = tmp_path / "out"
    stopped_after_one_shard(data, out, checkpoint)
    table, records = read_shard(out, 0, checkpoint)
    meta, vectors = split_vectors(table)
    vectors = vectors.copy()
    if damage == "nan":
        vectors[5, 0] = np.nan
    else:
        vectors[5] *= 362.0
    column = pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), vectors.shape[1])
    write_shard(out, 0, meta.append_column(VECTOR_COLUMN, column), records, checkpoint)
    region = int(meta.column("id")[5].as_py())
    with pytest.raises(
        IndexFormatError, match=rf"shard_00000.parquet: region id {region} has {message}"
    ):
        build(data, out, checkpoint)
    assert not (out / "manifest.json").exists()


class StreamingSynthetic:
    """`SyntheticExtractor` as a `StreamingExtractor`: every path up front, results in order; the
    stream raises at path number `fail_at` (a worker that died)."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.inner = SyntheticExtractor()
        self.fail_at = fail_at
        self.streamed: list[int] = []  # paths given to each stream
        self.yielded = 0
        self.closed = False

    def __call__(self, paths: list[Path]) -> list:
        return self.inner(paths)

    def stream(self, paths):
        self.streamed.append(len(paths))
        try:
            for number, path in enumerate(paths):
                if number == self.fail_at:
                    raise RuntimeError("worker died")
                self.yielded += 1
                yield self.inner.predict(path)
        finally:
            self.closed = True


def test_a_streaming_extractor_gets_every_path_once_and_builds_the_same_index(
    tmp_path, data, reference, checkpoint, read_content
):
    extractor = StreamingSynthetic()
    build(data, tmp_path / "out", checkpoint, extractor)
    assert extractor.streamed == [len(NAMES)] and extractor.inner.calls == 0
    assert extractor.closed
    assert_same_index(read_content, reference, tmp_path / "out")


def test_a_stream_that_fails_continues_batch_by_batch(
    tmp_path, data, reference, checkpoint, read_content, caplog
):
    extractor = StreamingSynthetic(fail_at=7)
    caplog.set_level(logging.WARNING, logger="index")
    build(data, tmp_path / "out", checkpoint, extractor)
    # batches of 2: paths 0..5 streamed, the batch of 6 and 7 and the rest by calls
    assert extractor.yielded == 7 and extractor.inner.calls == (len(NAMES) - 6) // 2
    assert any("extractor stream failed (worker died)" in r.getMessage() for r in caplog.records)
    assert_same_index(read_content, reference, tmp_path / "out")


def test_a_stop_request_closes_the_stream_and_the_build_resumes(
    tmp_path, data, reference, checkpoint, read_content
):
    extractor = StreamingSynthetic()
    polls = iter(range(100))
    status = build(
        data, tmp_path / "out", checkpoint, extractor, should_stop=lambda: next(polls) >= 5
    )
    assert status["status"] == "stopped" and extractor.closed and extractor.yielded < len(NAMES)
    resumed = StreamingSynthetic()
    assert build(data, tmp_path / "out", checkpoint, resumed)["status"] == "complete"
    assert resumed.streamed == [len(NAMES) - 8]  # shards 0 and 1 (4 images each) committed
    assert_same_index(read_content, reference, tmp_path / "out")
