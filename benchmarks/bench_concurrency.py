"""Concurrent users against one explorer server: errors, cross-talk, p50/p95 latency, memory.

    python benchmarks/bench_concurrency.py --users 24 --seconds 60 --out benchmarks/results/concurrency.json

Each simulated user is its own `gradio_client.Client` (its own session). It uploads its own image,
then for `--seconds` moves the slider (/render), clicks (/click_xy) and now and then uploads its
other image (/load_image), at random. Every answer is checked against what the user's *own* image
must give — the overlay's size, the clicked region's chain of (level, region, area) computed from
that image alone — so one session seeing another's state counts as cross-talk. Then twice `--evict`
further users come and go one after another: the sessions held stay at capacity, memory levels off.
The app runs in this process over the fake predictor (tests.fakes.GridPredictor) and an index of
generated images, unless --checkpoint gives a real model.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import app  # noqa: E402
import explorer as ex  # noqa: E402
import explorer_service as svc  # noqa: E402
import serve_options  # noqa: E402
from benchmarks.bench_app import free_port, percentiles  # noqa: E402
from benchmarks.machine import machine_info  # noqa: E402
from index.managed import open_or_build  # noqa: E402

OPS = ("upload", "render", "click")


def user_images(user: int) -> list[np.ndarray]:
    """Two images per user whose sizes no other user's image has (A: 40+2u x 96+4u, B: 100+2u x 60+2u)."""
    rng = np.random.default_rng(user)
    shapes = [(40 + 2 * user, 96 + 4 * user), (100 + 2 * user, 60 + 2 * user)]
    return [
        rng.integers(0, 256, (1, 1, 3), dtype=np.uint8).repeat(h, 0).repeat(w, 1) for h, w in shapes
    ]


def expected_rows(predictor, image: np.ndarray, x: int, y: int, level: int) -> list[list]:
    """The chain table a click on `image` must give: computed here, from this image only."""
    session = ex.set_image(predictor, image)
    _, rows, _ = ex.select_at(None, session, x, y, level)
    return rows


@dataclass
class Tally:
    """What the users saw: latency samples per operation, error and cross-talk messages."""

    samples: dict = field(default_factory=lambda: {op: [] for op in OPS})
    errors: list = field(default_factory=list)
    cross_talk: list = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def timed(self, op: str, call):
        start = time.perf_counter()
        try:
            return call()
        except Exception as err:  # noqa: BLE001 - every failure is a finding to report
            with self.lock:
                self.errors.append(f"{op}: {type(err).__name__}: {err}")
            return None
        finally:
            with self.lock:
                self.samples[op].append(time.perf_counter() - start)

    def check(self, ok: bool, what: str) -> None:
        if not ok:
            with self.lock:
                self.cross_talk.append(what)


def one_user(
    url: str, user: int, predictor, top_level: int, seconds: float, tally: Tally, folder: Path
) -> None:
    """One session from connection to close (which ends its heartbeat stream)."""
    from gradio_client import Client

    with closing(Client(url, verbose=False)) as client:
        run_script(client, user, predictor, top_level, seconds, tally, folder)


def run_script(
    client, user: int, predictor, top_level: int, seconds: float, tally: Tally, folder: Path
) -> None:
    """Upload, slide, click, upload the other image, slide, click; then all three at random until
    `seconds` have passed. Every answer is checked."""
    from gradio_client import handle_file

    rng = np.random.default_rng(1000 + user)
    paths = []
    for i, image in enumerate(user_images(user)):
        paths.append(folder / f"user{user}_{i}.png")
        Image.fromarray(image).save(paths[-1])
    current, deadline, oracle = 0, time.monotonic() + seconds, {}
    tally.timed(
        "upload",
        lambda: client.predict(handle_file(str(paths[0])), 0, 0.45, False, api_name="/load_image"),
    )
    script = ["render", "click", "upload", "render", "click"]
    while script or time.monotonic() < deadline:
        h, w = user_images(user)[current].shape[:2]
        op = script.pop(0) if script else rng.choice(OPS, p=[0.1, 0.45, 0.45])
        if op == "upload":
            current = 1 - current
            tally.timed(
                "upload",
                lambda current=current: client.predict(
                    handle_file(str(paths[current])), 0, 0.45, False, api_name="/load_image"
                ),
            )
        elif op == "render":
            view = tally.timed(
                "render",
                lambda: client.predict(
                    int(rng.integers(0, top_level + 1)), 0.45, False, api_name="/render"
                ),
            )
            if view is not None:
                size = Image.open(view).size[::-1]
                tally.check(size == (h, w), f"user {user}: overlay {size}, own image {(h, w)}")
        else:
            x, y, level = (
                int(rng.integers(0, w)),
                int(rng.integers(0, h)),
                int(rng.integers(0, top_level + 1)),
            )
            out = tally.timed(
                "click",
                lambda x=x, y=y, level=level: client.predict(
                    x, y, level, 0.45, False, 3, "same level", True, api_name="/click_xy"
                ),
            )
            if out is not None:
                key = (current, x, y, level)
                oracle[key] = oracle.get(key) or expected_rows(
                    predictor, user_images(user)[current], x, y, level
                )
                got = [strip_row(item["caption"]) for item in out[1]]
                tally.check(
                    got == [row[:3] for row in oracle[key]],
                    f"user {user}: click chain {got[:1]}...",
                )


def strip_row(caption: str) -> list[int]:
    """[level, region, area] from a parts-to-whole strip caption 'L2 · region 3 · 1,600 px (..)'."""
    level, region, area = caption.split(" · ")[:3]
    return [int(level[1:]), int(region.split()[1]), int(area.split()[0].replace(",", ""))]


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


def run_users(
    explorer: svc.Explorer, users: int, seconds: float, evict: int = 0, max_sessions: int = 64
) -> dict:
    """Serve `explorer`, run `users` concurrent users for `seconds`, then `evict` one-shot users."""
    from gradio_client import Client, handle_file

    port = free_port()
    args = app.parse_args(["--port", str(port), "--max-sessions", str(max_sessions)])
    demo = app.launch(explorer, args, prevent_thread_lock=True, quiet=True)
    url, tally, top = f"http://127.0.0.1:{port}/", Tally(), explorer.predictor.num_levels - 1
    memory = {"rss_mb_start": rss_mb()}
    try:
        with tempfile.TemporaryDirectory() as folder, ThreadPoolExecutor(users) as pool:
            start = time.perf_counter()
            jobs = [
                pool.submit(one_user, url, u, explorer.predictor, top, seconds, tally, Path(folder))
                for u in range(users)
            ]
            for job in jobs:
                job.result()
            wall = time.perf_counter() - start
            memory["rss_mb_after_users"] = rss_mb()
            for round_ in (1, 2):  # users who come, upload once and leave: memory must level off
                for u in range(users + (round_ - 1) * evict, users + round_ * evict):
                    path = (
                        Path(folder) / f"evict{u}.png"
                    )  # all of one size: the state per session is equal
                    Image.fromarray(np.full((64, 96, 3), u % 256, np.uint8)).save(path)
                    with closing(Client(url, verbose=False)) as client:  # ends its heartbeat stream
                        client.predict(
                            handle_file(str(path)), 0, 0.45, False, api_name="/load_image"
                        )
                memory[f"rss_mb_after_{round_ * evict}_more_sessions"] = rss_mb()
        memory.update(
            rss_mb_end=rss_mb(),
            rss_mb_peak=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            sessions_held=len(demo.state_holder.session_data),
            session_capacity=max_sessions,
        )
    finally:
        demo.close()
    return {
        "users": users,
        "seconds": seconds,
        "wall_s": round(wall, 2),
        "evicting_users": 2 * evict,
        "ops": {op: percentiles(s) if s else {"n": 0} for op, s in tally.samples.items()},
        "errors": tally.errors,
        "cross_talk": tally.cross_talk,
        "memory": memory,
    }


def fake_explorer(root: Path) -> svc.Explorer:
    """GridPredictor over an index of 8 generated images (numpy only: no model)."""
    from tests.fakes import GridPredictor

    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray(rng.integers(0, 256, (48 + 4 * i, 64, 3), dtype=np.uint8)).save(
            data / f"img{i}.png"
        )
    predictor = GridPredictor()
    index = open_or_build(
        data,
        root / "index",
        svc.index_extractor(predictor),
        checkpoint_hash=predictor.checkpoint_hash,
        progress=lambda done, total: None,
    )
    return svc.Explorer(predictor, index, sorted(data.glob("*.png")), [data], root / "indexes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=24)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument(
        "--evict", type=int, default=80, help="one-shot users per round after the run (two rounds)"
    )
    parser.add_argument("--max-sessions", type=int, default=serve_options.MAX_SESSIONS)
    parser.add_argument(
        "--checkpoint", default=None, help="real model (default: the fake GridPredictor)"
    )
    parser.add_argument(
        "--data",
        default=str(serve_options.DEFAULT_IMAGES),
        help="with --checkpoint: the indexed folder",
    )
    parser.add_argument("--out", default="benchmarks/results/concurrency.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        explorer = (
            app.load_app(app.parse_args(["--checkpoint", args.checkpoint, "--data", args.data]))
            if args.checkpoint
            else fake_explorer(Path(root))
        )
        result = run_users(explorer, args.users, args.seconds, args.evict, args.max_sessions)
    result = {
        "machine": machine_info(),
        "predictor": args.checkpoint or "tests.fakes.GridPredictor",
        "command": " ".join(sys.argv),
        **result,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1, default=str))
    print(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
