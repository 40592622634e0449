"""SIGKILL at random points, then resume: nothing is lost or corrupted (issue 6).

An index build is killed at least 10 times and resumed each time; it ends with exactly the index
an uninterrupted build gives (ids, vectors, metadata). `hsg train --config tiny` is killed at
least 10 times; after every kill the latest checkpoint loads, and the resumed run ends with the
weights of an uninterrupted run. Random points come from a seeded generator (reproducible).
"""

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tests.index.conftest import index_content, write_images

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
KILLS = 10
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}

BUILD_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from index import build_index
    from index.synthetic import SyntheticExtractor

    inner = SyntheticExtractor()

    def extract(paths):  # a model's pace: 25 ms per image
        time.sleep(0.025 * len(paths))
        return inner(paths)

    print("ready", flush=True)
    build_index(Path(sys.argv[1]), Path(sys.argv[2]), extract, checkpoint_hash="ckpt-crash",
                batch_size=2, shard_images=4, progress=lambda done, total: None)
    """
)


def start(argv: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        argv, env=ENV, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )


def kill(proc: subprocess.Popen) -> bool:
    """SIGKILL `proc`; False when it had already finished by itself."""
    if proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    return True


def committed_shards(out: Path) -> int:
    return len(list((out / "pending").glob("shard_*.parquet")))


def test_index_build_killed_at_random_points_resumes_to_the_uninterrupted_index(tmp_path):
    from index import build_index
    from index.synthetic import SyntheticExtractor

    data, out = tmp_path / "data", tmp_path / "killed"
    write_images(data, [f"{'ab'[i % 2]}/img{i:03d}.png" for i in range(120)])  # 3 s of "model" time
    build_index(
        data,
        tmp_path / "reference",
        SyntheticExtractor(),
        checkpoint_hash="ckpt-crash",
        batch_size=2,
        shard_images=4,
        progress=lambda done, total: None,
    )
    rng, kills, shards, mid_write = random.Random(6), 0, 0, 0
    while kills < KILLS:  # each run does at most 0.25 s of the 3 s of work: it cannot finish
        proc = start([sys.executable, "-c", BUILD_SCRIPT, str(data), str(out)])
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.25))
        assert kill(proc), "the build finished before it could be killed"
        kills += 1
        mid_write += bool(
            list((out / "pending").glob("*.part"))
        )  # killed while a shard was being written
        assert not (out / "manifest.json").exists()
        assert committed_shards(out) >= shards  # committed work is never lost
        shards = committed_shards(out)
    proc = start([sys.executable, "-c", BUILD_SCRIPT, str(data), str(out)])
    assert proc.wait(timeout=120) == 0
    assert not (out / "pending").exists() and not list(out.glob("*.part"))
    (meta_a, vec_a, ids_a), (meta_b, vec_b, ids_b) = (
        index_content(tmp_path / "reference"),
        index_content(out),
    )
    pd.testing.assert_frame_equal(meta_a, meta_b)
    np.testing.assert_array_equal(vec_a, vec_b)
    np.testing.assert_array_equal(ids_a, ids_b)
    print(
        f"index build: {kills} SIGKILLs ({mid_write} during a shard write), resumed {kills} times, "
        f"{shards} of 30 shards committed before the last run"
    )


def train_argv(images: Path, out: Path, steps: int) -> list[str]:
    return [
        sys.executable,
        "-c",
        "import sys, cli; sys.exit(cli.main(sys.argv[1:]))",
        "train",
        "--config",
        "tiny",
        "--data",
        str(images),
        "--out",
        str(out),
        "--resume",
        "--device",
        "cpu",
        "--set",
        f"train.iterations={steps}",
        "--set",
        "train.checkpoint_every=1",
        "--set",
        "overseg.cache=false",
    ]


def logged_steps(out: Path) -> int:
    path = out / "log.jsonl"
    return path.read_text().count("\n") if path.exists() else 0


def wait_for_a_step(proc: subprocess.Popen, out: Path, timeout: float = 120.0) -> None:
    """Until this run logs one more training step (or ends): each run then makes progress."""
    before, deadline = logged_steps(out), time.monotonic() + timeout
    while logged_steps(out) == before and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)


def test_training_killed_at_random_points_always_leaves_a_loadable_checkpoint(
    tmp_path, tiny_checkpoint
):
    from hsg_core.checkpoint import read_checkpoint
    from hsg_core.predictor import load_predictor

    images, steps = tiny_checkpoint[1], 48
    assert start(train_argv(images, tmp_path / "reference", steps)).wait(timeout=300) == 0
    reference = read_checkpoint(tmp_path / "reference" / "checkpoint.pt")
    out, rng, kills, last_step, mid_write = tmp_path / "killed", random.Random(7), 0, 0, 0
    while kills < KILLS:
        proc = start(train_argv(images, out, steps))
        wait_for_a_step(proc, out)
        time.sleep(rng.uniform(0.0, 0.3))  # lands in a step, in the checkpoint write, or between
        if not kill(proc):
            break
        kills += 1
        mid_write += bool(list(out.glob("checkpoint.pt.*.part")))
        if (out / "checkpoint.pt").exists():
            step = read_checkpoint(out / "checkpoint.pt")["step"]
            load_predictor(
                out / "checkpoint.pt", "cpu"
            )  # the latest complete checkpoint always loads
            assert step >= last_step
            last_step = step
    assert kills >= KILLS, f"training finished after {kills} kills"
    assert start(train_argv(images, out, steps)).wait(timeout=300) == 0
    final = read_checkpoint(out / "checkpoint.pt")
    assert final["step"] == steps and not list(out.glob("*.part"))
    for key, value in reference["model"].items():  # resumed 10 times = never interrupted
        torch.testing.assert_close(final["model"][key], value, rtol=1e-5, atol=1e-6)
    print(
        f"training: {kills} SIGKILLs ({mid_write} during a checkpoint write), resumed {kills} times, "
        f"step {last_step} of {steps} before the last run"
    )
