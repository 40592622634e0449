"""First launch of the explorer: `python app.py` -> HTTP 200, and `python app.py --help`.

    python benchmarks/bench_launch.py --out benchmarks/results/app_launch.json

Each run starts `python app.py --port P` in a fresh process (the shipped demo index, so nothing is
built) and polls the page until it answers 200; the lines the app printed while starting are kept
with their times. `--cache DIR` points HSG_CACHE at DIR (default: the caller's cache, which holds
the model's fetched weights; the run never writes an index there when the shipped one fits).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.machine import machine_info  # noqa: E402
from hsg_files import atomic_write_text  # noqa: E402


def free_port() -> int:
    """A TCP port nobody listens on now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(url: str) -> bool:
    """Whether `url` answers HTTP 200."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def collect(stream, start: float, lines: list) -> None:
    """Append (seconds since start, line) for every line of `stream` until it closes."""
    for line in iter(stream.readline, ""):
        lines.append((round(time.perf_counter() - start, 2), line.rstrip()))


def launch_once(cache: str | None, timeout_s: float) -> dict:
    """One `python app.py` start: seconds to HTTP 200 and what it printed meanwhile."""
    port = free_port()
    env = dict(os.environ, **({"HSG_CACHE": cache} if cache else {}))
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "app.py", "--port", str(port)],
        cwd=REPO,
        env=env,
        text=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    lines: list = []
    threading.Thread(target=collect, args=(proc.stderr, start, lines), daemon=True).start()
    try:
        while not answers(f"http://127.0.0.1:{port}/"):
            if proc.poll() is not None or time.perf_counter() - start > timeout_s:
                raise RuntimeError(f"app.py did not answer (exit {proc.poll()}): {lines[-3:]}")
            time.sleep(0.1)
        ready = time.perf_counter() - start
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return {
        "to_http_200_s": round(ready, 2),
        "printed": [line for line in lines if line[1].startswith("hsg")],
    }


def help_seconds() -> float:
    """Seconds of `python app.py --help`."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "app.py", "--help"], cwd=REPO, check=True, capture_output=True)
    return round(time.perf_counter() - start, 2)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--cache", default=None, help="HSG_CACHE for the runs (default: as the caller's)"
    )
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--out", default="benchmarks/results/app_launch.json")
    args = parser.parse_args(argv)
    runs = [launch_once(args.cache, args.timeout) for _ in range(args.repeats)]
    result = {
        "command": "python benchmarks/bench_launch.py " + " ".join(argv or sys.argv[1:]),
        "launch_to_http_200_s": [run["to_http_200_s"] for run in runs],
        "first_run": runs[0],
        "help_s": help_seconds(),
        "load_average": os.getloadavg(),
        "machine": machine_info(),
    }
    atomic_write_text(args.out, json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=1))


if __name__ == "__main__":
    main()
