"""Benchmark of the segment index: query latency, size on disk, and build throughput.

    PYTHONPATH=. python benchmarks/bench_index.py --out benchmarks/results/index.json
    PYTHONPATH=. python benchmarks/bench_index.py --sizes 100000          # skip the 10^6 case
    PYTHONPATH=. python benchmarks/bench_index.py --open-only --out benchmarks/results/index_open.json
    PYTHONPATH=. python benchmarks/bench_index.py --scale --sizes 1000000 \
        --factories IVF1024,Flat IVF1024,SQ8 IVF1024,PQ32 --out benchmarks/results/index_scale.json
    PYTHONPATH=. python benchmarks/bench_index.py --merge --in-memory --sizes 1000000 \
        --out benchmarks/results/index_merge.json
    PYTHONPATH=. python benchmarks/bench_index.py --merge --sizes 10000000 \
        --out benchmarks/results/index_merge_1e7.json

Query latency: single queries, k=20, with a level filter, through `SegmentIndex.search`
(selector search + Hit construction), faiss on `--threads` CPU threads, for each size, exact
(Flat) and IVF-Flat, on clustered synthetic 128-d unit vectors (100 regions per image over
4 levels). Build throughput: `build_index` over real files with an extractor that returns
precomputed synthetic predictions, (a) at zero model cost, i.e. the index-side capacity per
image (hashing, validation, RLE, shard writes, commit) to set against the model's forward
throughput, and (b) with a simulated forward pass (`--forward-ms`, sleeping, so it releases the
GIL like a GPU model) to show how much of the forward-bound rate the pipelined build keeps.
The metadata size of (a)/(b) is optimistic (16 distinct predictions compress well); the raw
RLE size per region is reported next to it.

Scale (`--scale`, issue 14): per size and factory, an index of synthetic regions carrying real
voronoi RLE masks (16 templates) is opened in a fresh process, which reports the open time, its
RSS right after open, recall@10 of level-filtered searches against exact numpy search over the
stored vectors, and click->results p50/p95 of the explorer's own query path (`app.query_hits`:
k=8 per level, one hit per image, then `region_mask` of every shown hit; image decoding and
cropping are bench_app's part), plus disk bytes per region.

Merge (`--merge`, issue 14 item 3): the shards of a pending sharded build of synthetic regions
(`--shard-images` images of 100 regions per shard, automatic factory) are committed in a fresh
process, which reports the merge time, its RSS before the merge and its peak RSS (VmHWM), next to
the size of one shard (file, and decoded by pyarrow); with `--in-memory` the same shards are also
committed by the in-memory merge (the one before item 3) in another fresh process.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import metadata as package_metadata
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa

from index import SegmentIndex, build_index
from index.commit import commit_job
from index.factory import FLAT, choose_factory, ivf_factory
from index.ids import region_ids
from index.records import RegionRows, prediction_rows, rows_to_table
from index.rle import encode_mask
from index.shards import Plan, read_plan, read_shard, write_plan, write_shard
from index.synthetic import cluster_centers, clustered_unit_vectors, synthetic_prediction

REGIONS_PER_LEVEL = (64, 24, 8, 4)  # 100 regions per image
IMAGE_SIZE = (321, 481)  # BSDS500 size
DIM = 128
CENTERS = 2000
SPREAD = 0.8
SHARD_IMAGES = 1000


def machine_info() -> dict:
    """CPU model, core count, Python and library versions."""
    cpu = platform.processor() or "unknown"
    if Path("/proc/cpuinfo").exists():
        names = [
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "faiss": faiss.__version__,
        "numpy": np.__version__,
        "pyarrow": pa.__version__,
        "faiss_gpus": faiss.get_num_gpus(),
        "pandas": package_metadata.version("pandas"),
    }


def image_name(slot: int) -> str:
    """Relative path of the synthetic image in `slot`."""
    return f"img{slot:07d}.jpg"


def stand_in_rows() -> RegionRows:
    """One image's regions (REGIONS_PER_LEVEL) with whole-image boxes and a 1-pixel stand-in
    mask (this benchmark never decodes masks), as slot 0, with zero vectors: `synthetic_shard`
    gives every image slot its own ids and clustered vectors."""
    levels = np.concatenate([np.full(n, lv) for lv, n in enumerate(REGIONS_PER_LEVEL)])
    regions = np.concatenate([np.arange(n) for n in REGIONS_PER_LEVEL])
    parents = np.concatenate(
        [
            np.arange(n) % (REGIONS_PER_LEVEL[lv + 1] if lv + 1 < len(REGIONS_PER_LEVEL) else 1)
            - (lv + 1 == len(REGIONS_PER_LEVEL))
            for lv, n in enumerate(REGIONS_PER_LEVEL)
        ]
    )
    count = levels.size
    height, width = IMAGE_SIZE
    numeric = {
        "id": region_ids_at(levels, regions, 0),
        "level": levels,
        "region": regions,
        "parent": parents,
        "area": np.full(count, 100),
        "x0": np.zeros(count),
        "y0": np.zeros(count),
        "x1": np.full(count, width),
        "y1": np.full(count, height),
        "height": np.full(count, height),
        "width": np.full(count, width),
    }
    rle = encode_mask(np.ones((1, 1), bool))
    return RegionRows("", "0" * 64, numeric, [rle] * count, np.zeros((count, DIM), np.float32))


def region_ids_at(levels: np.ndarray, regions: np.ndarray, slot: int) -> np.ndarray:
    """[N] ids of (level, region) pairs ([N] each, sorted by level) in image `slot`."""
    return np.concatenate(
        [region_ids(int(lv), slot, regions[levels == lv]) for lv in np.unique(levels)]
    )


def synthetic_shard(
    images: range, templates: list[RegionRows], centers: np.ndarray, rng: np.random.Generator
) -> pa.Table:
    """Region rows + vectors for a range of image slots: slot s takes the regions of
    templates[s % len(templates)] under its own ids and name, with fresh clustered vectors."""
    chosen = [templates[s % len(templates)] for s in images]
    ends = np.cumsum([len(t) for t in chosen])
    vectors = np.split(clustered_unit_vectors(int(ends[-1]), centers, SPREAD, rng), ends[:-1])
    rows = [
        RegionRows(
            image_name(s),
            t.image_hash,
            {**t.numeric, "id": region_ids_at(t.numeric["level"], t.numeric["region"], s)},
            t.rle,
            v,
        )
        for s, t, v in zip(images, chosen, vectors)
    ]
    return rows_to_table(rows)


def synthetic_index(
    out_dir: Path,
    num_regions: int,
    factory: str,
    *,
    templates: list[RegionRows] | None = None,
    data_root: Path | None = None,
) -> float:
    """Writes shards of synthetic regions and commits them with `factory`.

    Args:
        out_dir: index folder.
        num_regions: regions in all (a multiple of sum(REGIONS_PER_LEVEL) images).
        factory: faiss factory.
        templates: per-image region rows to cycle through (default: `stand_in_rows`).
        data_root: folder the image names are relative to (default: `out_dir`).

    Returns:
        Time of the commit (seconds).
    """
    plan = synthetic_shards(out_dir, num_regions, factory, templates=templates, data_root=data_root)
    start = time.perf_counter()
    commit_job(out_dir, plan, factory)
    return time.perf_counter() - start


def synthetic_shards(
    out_dir: Path,
    num_regions: int,
    factory: str | None,
    *,
    templates: list[RegionRows] | None = None,
    data_root: Path | None = None,
    shard_images: int = SHARD_IMAGES,
) -> Plan:
    """Writes the plan and the shards of a pending build of synthetic regions (arguments as
    `synthetic_index`; `shard_images` images of sum(REGIONS_PER_LEVEL) regions per shard)."""
    templates = templates or [stand_in_rows()]
    num_images = num_regions // sum(REGIONS_PER_LEVEL)
    plan = Plan(
        kind="build",
        checkpoint_hash="bench",
        data_root=str(data_root or out_dir),
        shard_images=shard_images,
        factory=factory,
        images=[[image_name(s), s] for s in range(num_images)],
        next_slot=num_images,
    )
    write_plan(out_dir, plan)
    centers = cluster_centers(CENTERS, DIM, seed=0)
    rng = np.random.default_rng(1)
    for shard in range(plan.num_shards):
        slots = range(shard * shard_images, min((shard + 1) * shard_images, num_images))
        records = [
            {"image": image_name(s), "hash": "0" * 64, "slot": s, "status": "ok", "error": None}
            for s in slots
        ]
        table = synthetic_shard(slots, templates, centers, rng)
        write_shard(out_dir, shard, table, records, "bench")
    return plan


def query_latency(index: SegmentIndex, queries: np.ndarray, levels: np.ndarray, **kwargs) -> dict:
    """p50/p95/mean latency (ms) of single k=20 searches, one level each."""
    index.search(queries[0], 20, levels=[int(levels[0])], **kwargs)  # warm-up
    times = []
    for query, level in zip(queries, levels):
        start = time.perf_counter()
        index.search(query, 20, levels=[int(level)], **kwargs)
        times.append((time.perf_counter() - start) * 1e3)
    times = np.asarray(times)
    return {
        "p50_ms": round(float(np.percentile(times, 50)), 3),
        "p95_ms": round(float(np.percentile(times, 95)), 3),
        "mean_ms": round(float(times.mean()), 3),
    }


def recall_at_20(
    index: SegmentIndex, exact: SegmentIndex, queries: np.ndarray, levels: np.ndarray
) -> float:
    found = 0
    for query, level in zip(queries, levels):
        got = {h.id for h in index.search(query, 20, levels=[int(level)])}
        found += len(got & {h.id for h in exact.search(query, 20, levels=[int(level)])})
    return found / (20 * len(queries))


def bench_size(work: Path, num_regions: int, num_queries: int) -> list[dict]:
    """Flat and IVF indexes over `num_regions` regions: latency, recall, size, commit time."""
    rng = np.random.default_rng(7)
    queries = clustered_unit_vectors(
        num_queries, cluster_centers(CENTERS, DIM, seed=0), SPREAD, rng
    )
    levels = rng.choice(len(REGIONS_PER_LEVEL), num_queries, p=np.array(REGIONS_PER_LEVEL) / 100)
    results, opened = [], {}
    for factory in (FLAT, ivf_factory(num_regions)):
        out = work / f"n{num_regions}_{factory.replace(',', '_')}"
        commit_seconds = synthetic_index(out, num_regions, factory)
        start = time.perf_counter()
        index = SegmentIndex.open(out, use_gpu=False)
        open_seconds = time.perf_counter() - start  # verified: checksums, ids, norms
        row = {
            "regions": len(index),
            "factory": factory,
            "nprobe": index.info()["nprobe"],
            "size_on_disk_bytes": index.info()["size_bytes"],
            "commit_seconds": round(commit_seconds, 2),
            "open_seconds": round(open_seconds, 2),
            "level_filtered_k20": query_latency(index, queries, levels),
            "level_filtered_k20_one_per_image": query_latency(
                index, queries[:50], levels[:50], one_per_image=True
            ),
        }
        opened[factory] = index
        if factory != FLAT:
            row["recall_at_20_vs_flat"] = recall_at_20(
                index, opened[FLAT], queries[:100], levels[:100]
            )
        results.append(row)
        print(json.dumps(row), flush=True)
    for factory in opened:
        shutil.rmtree(work / f"n{num_regions}_{factory.replace(',', '_')}")
    return results


def bench_open(work: Path, num_regions: int, repeats: int) -> list[dict]:
    """Open time (median of `repeats`, files in the page cache; wall and CPU seconds) of Flat and
    IVF indexes over `num_regions` regions: verified (sha256 of every data file, ids, norms) and
    the fast path (`verify=False`: sizes, ids, norms)."""
    results = []
    for factory in (FLAT, ivf_factory(num_regions)):
        out = work / f"open_n{num_regions}_{factory.replace(',', '_')}"
        synthetic_index(out, num_regions, factory)
        row: dict = {"regions": num_regions, "factory": factory}
        for verify in (True, False):
            wall, cpu = [], []
            for _ in range(repeats):
                start, start_cpu = time.perf_counter(), time.process_time()
                index = SegmentIndex.open(out, use_gpu=False, verify=verify)
                wall.append(time.perf_counter() - start)
                cpu.append(time.process_time() - start_cpu)  # all threads: less sensitive to load
                del index
            case = "verified" if verify else "fast"
            row[f"open_seconds_{case}"] = round(float(np.median(wall)), 3)
            row[f"open_cpu_seconds_{case}"] = round(float(np.median(cpu)), 3)
        row["size_on_disk_bytes"] = SegmentIndex.open(out, verify=False).info()["size_bytes"]
        shutil.rmtree(out)
        results.append(row)
        print(json.dumps(row), flush=True)
    return results


SCALE_K = 10  # recall@10
CLICK_K = 8  # the explorer's gallery size per level
_CHILD = r"""
import json, sys, time
import faiss, numpy as np
from pathlib import Path
sys.path.insert(0, {root!r})
from benchmarks.bench_index import scale_child
print(json.dumps(scale_child(Path({out!r}), Path({queries!r}), {threads})))
"""


def rss_bytes() -> int:
    """Resident set size of this process (VmRSS), bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def exact_top(vectors: np.ndarray, rows: np.ndarray, query: np.ndarray, k: int) -> np.ndarray:
    """Row numbers of the `k` rows (of `rows`) with the highest inner product with `query`,
    computed in chunks from (memory-mapped) `vectors`."""
    best_rows, best_scores = np.zeros(0, np.int64), np.zeros(0, np.float32)
    for start in range(0, rows.size, 1 << 18):
        chunk = rows[start : start + (1 << 18)]
        scores = np.asarray(vectors[chunk[0] : chunk[-1] + 1], np.float32) @ query
        scores = scores[chunk - chunk[0]]
        best_rows = np.concatenate([best_rows, chunk])
        best_scores = np.concatenate([best_scores, scores])
        keep = np.argsort(-best_scores, kind="stable")[:k]
        best_rows, best_scores = best_rows[keep], best_scores[keep]
    return best_rows


def click_path(index: SegmentIndex, query: np.ndarray, level: int) -> int:
    """The explorer's click -> gallery path (`app.query_hits` + `hit_tiles` without the image):
    k=8 hits of the level, one per image, then each shown hit's mask. Returns mask pixels."""
    hits = index.search(query, k=CLICK_K, levels=[level], one_per_image=True)
    return sum(int(index.region_mask(hit).sum()) for hit in hits)


def scale_child(out: Path, queries_file: Path, threads: int) -> dict:
    """Run in a fresh process: open time, RSS after open, recall@10, click latency."""
    faiss.omp_set_num_threads(threads)
    before = rss_bytes()
    start = time.perf_counter()
    index = SegmentIndex.open(out, use_gpu=False)
    open_seconds = time.perf_counter() - start
    after_open = rss_bytes()
    in_background = index.verification == "running"
    index.wait_verified()  # large indexes: sha256 and norms checked in the background
    verified_seconds = time.perf_counter() - start  # from the start of open to every check passed
    data = np.load(queries_file)
    queries, levels = data["queries"], data["levels"]
    click_path(index, queries[0], int(levels[0]))  # warm-up
    times = []
    for query, level in zip(queries, levels):
        tick = time.perf_counter()
        click_path(index, query, int(level))
        times.append((time.perf_counter() - tick) * 1e3)
    after_clicks = rss_bytes()
    ids = index._ids  # ascending: the rows of a level are contiguous
    # exact search reads every vector through a mapping of its own, after the clicks were timed
    truth_vectors = np.load(out / index.manifest["files"]["vectors"]["name"], mmap_mode="r")
    found = 0
    for query, level in zip(queries, levels):
        low, high = np.searchsorted(ids, [int(level) << 48, (int(level) + 1) << 48])
        truth = set(ids[exact_top(truth_vectors, np.arange(low, high), query, SCALE_K)].tolist())
        got = {hit.id for hit in index.search(query, SCALE_K, levels=[int(level)])}
        found += len(got & truth)
    return {
        "open_seconds": round(open_seconds, 3),
        "rss_before_open_bytes": before,
        "rss_after_open_bytes": after_open,
        "verified_in_background": in_background,
        "seconds_to_verified": round(verified_seconds, 2),
        "rss_after_clicks_bytes": after_clicks,
        "recall_at_10_vs_exact": round(found / (SCALE_K * len(queries)), 4),
        "click_p50_ms": round(float(np.percentile(times, 50)), 2),
        "click_p95_ms": round(float(np.percentile(times, 95)), 2),
        "vectors_memory_mapped": isinstance(index.vectors(), np.memmap),
    }


def bench_scale(
    work: Path, num_regions: int, factories: list[str], num_queries: int, threads: int
) -> list[dict]:
    """Per factory: build `num_regions` synthetic regions with real RLE masks, then measure
    (in a fresh process, `scale_child`) open, RSS, recall@10 and click latency."""
    from benchmarks.explorer_index import templates

    rows = [template for template, _ in templates()]
    rng = np.random.default_rng(7)
    queries_file = work / "queries.npz"
    np.savez(
        queries_file,
        queries=clustered_unit_vectors(
            num_queries, cluster_centers(CENTERS, DIM, seed=0), SPREAD, rng
        ),
        levels=rng.choice(len(REGIONS_PER_LEVEL), num_queries, p=np.array(REGIONS_PER_LEVEL) / 100),
    )
    results = []
    for factory in factories:
        out = work / f"scale_n{num_regions}_{factory.replace(',', '_')}"
        commit_seconds = synthetic_index(out, num_regions, factory, templates=rows)
        code = _CHILD.format(
            root=str(Path(__file__).resolve().parents[1]),
            out=str(out),
            queries=str(queries_file),
            threads=threads,
        )
        child = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        manifest = json.loads((out / "manifest.json").read_text())
        files = {kind: entry["bytes"] for kind, entry in manifest["files"].items()}
        row = {
            "regions": num_regions,
            "factory": factory,
            "nprobe": manifest["nprobe"],
            "commit_seconds": round(commit_seconds, 1),
            **json.loads(child.stdout.strip().splitlines()[-1]),
            "disk_bytes_per_region": round(sum(files.values()) / num_regions, 1),
            "disk_bytes_per_region_by_file": {
                k: round(v / num_regions, 1) for k, v in files.items()
            },
        }
        shutil.rmtree(out)
        results.append(row)
        print(json.dumps(row), flush=True)
    return results


_MERGE_CHILD = r"""
import json, sys
from pathlib import Path
sys.path.insert(0, {root!r})
from benchmarks.bench_index import merge_child
print(json.dumps(merge_child(Path({out!r}), {streamed!r}, {threads})))
"""


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (VmHWM), bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def merge_child(out: Path, streamed: bool, threads: int) -> dict:
    """Run in a fresh process: commits the pending build of `out`, streamed or in memory (the
    merge before issue 14 item 3); its time, the RSS before it and the peak RSS."""
    import index.commit as commit

    faiss.omp_set_num_threads(threads)
    streamed_commit, results = commit.streamed_commit, []

    def merge_streamed(*args):  # None: the commit fell back to the in-memory path (Flat)
        results.append(streamed_commit(*args) if streamed else None)
        return results[-1]

    commit.streamed_commit = merge_streamed
    plan = read_plan(out)
    before = rss_bytes()
    start = time.perf_counter()
    manifest = commit.commit_job(out, plan, plan.factory)
    return {
        "merge": "in_memory" if results == [None] else "streamed",
        "factory": manifest["factory"],
        "merge_seconds": round(time.perf_counter() - start, 1),
        "rss_before_merge_bytes": before,
        "peak_rss_bytes": peak_rss_bytes(),
    }


def bench_merge(
    work: Path, num_regions: int, shard_images: int, threads: int, in_memory: bool
) -> list[dict]:
    """Peak RSS of the merge of a sharded build of `num_regions` synthetic regions (automatic
    factory) against the size of one shard: streamed, and (with `in_memory`) the merge before
    issue 14 item 3, each in a fresh process over the same shards."""
    out = work / f"merge_n{num_regions}"
    plan = synthetic_shards(out, num_regions, None, shard_images=shard_images)
    shard_files = sorted((out / "pending").glob("shard_*.parquet"))
    largest = max(shard_files, key=lambda path: path.stat().st_size)
    table, _ = read_shard(out, int(largest.stem.split("_")[1]), "bench")
    shard = {
        "regions": num_regions,
        "shards": plan.num_shards,
        "regions_per_shard": shard_images * sum(REGIONS_PER_LEVEL),
        "shard_file_bytes": largest.stat().st_size,
        "shard_in_memory_bytes": table.nbytes,
        "all_shards_bytes": sum(path.stat().st_size for path in shard_files),
    }
    del table
    kept = work / "pending_copy"
    if in_memory:
        shutil.copytree(out / "pending", kept)
    results = []
    for streamed in (True, False) if in_memory else (True,):
        if not streamed:
            shutil.rmtree(out)
            out.mkdir()
            shutil.move(kept, out / "pending")
        code = _MERGE_CHILD.format(
            root=str(Path(__file__).resolve().parents[1]),
            out=str(out),
            streamed=streamed,
            threads=threads,
        )
        child = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        row = {**shard, **json.loads(child.stdout.strip().splitlines()[-1])}
        manifest = json.loads((out / "manifest.json").read_text())
        row["index_bytes"] = sum(entry["bytes"] for entry in manifest["files"].values())
        row["peak_over_shard_file"] = round(row["peak_rss_bytes"] / row["shard_file_bytes"], 2)
        row["peak_increase_over_shard_file"] = round(
            (row["peak_rss_bytes"] - row["rss_before_merge_bytes"]) / row["shard_file_bytes"], 2
        )
        results.append(row)
        print(json.dumps(row), flush=True)
    shutil.rmtree(out)
    return results


def bench_build(work: Path, num_images: int, forward_ms: list[float]) -> dict:
    """Build throughput with ~100 regions per image: index-side capacity (zero-cost extractor), and
    with simulated forward passes of `forward_ms` per image (sleeping: they release the GIL,
    like a GPU model)."""
    data = work / "build_data"
    rng = np.random.default_rng(3)
    for number in range(num_images):
        path = data / f"d{number % 10}" / f"img{number:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.bytes(40_000))  # about a BSDS JPEG
    pool = [
        synthetic_prediction(
            np.random.default_rng(seed),
            image_size=IMAGE_SIZE,
            layout="voronoi",
            regions_per_level=REGIONS_PER_LEVEL,
            centers=cluster_centers(64, DIM),
        )
        for seed in range(16)
    ]
    rle_bytes = np.mean(
        [sum(map(len, prediction_rows(p, "x", "", 0).rle)) / sum(REGIONS_PER_LEVEL) for p in pool]
    )
    result = {
        "images": num_images,
        "regions_per_image": sum(REGIONS_PER_LEVEL),
        "image_size": list(IMAGE_SIZE),
        "rle_bytes_per_region_before_compression": round(float(rle_bytes), 1),
    }
    result["zero_cost_extractor"] = _timed_build(data, work / "build0", pool, 0.0)
    for ms in forward_ms:
        result[f"simulated_forward_{ms:g}ms"] = run = _timed_build(data, work / "build1", pool, ms)
        run["fraction_of_forward_bound"] = round(run["images_per_s"] * ms / 1e3, 3)
        print(json.dumps({f"simulated_forward_{ms:g}ms": run}), flush=True)
    shutil.rmtree(data)
    return result


def _timed_build(data: Path, out: Path, pool: list, forward_ms: float) -> dict:
    """One `build_index` run; the extractor cycles through `pool`, sleeping `forward_ms` each."""
    calls = iter(range(10**9))
    marks: dict[str, float] = {}

    def extract(paths: list[Path]) -> list:
        time.sleep(forward_ms * len(paths) / 1e3)
        return [pool[next(calls) % len(pool)] for _ in paths]

    def progress(done: int, total: int) -> None:
        if done == total:
            marks["extracted"] = time.perf_counter()

    start = time.perf_counter()
    manifest = build_index(
        data, out, extract, checkpoint_hash="bench", batch_size=8, progress=progress
    )
    end = time.perf_counter()
    size = sum(entry["bytes"] for entry in manifest["files"].values())
    shutil.rmtree(out)
    images = manifest["counts"]["images"]
    return {
        "images_per_s": round(images / (end - start), 1),
        "extraction_phase_images_per_s": round(images / (marks["extracted"] - start), 1),
        "commit_seconds": round(end - marks["extracted"], 2),
        "index_bytes": size,
        "bytes_per_region": round(size / manifest["counts"]["regions"], 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/index.json"))
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[100_000, 1_000_000],
        help="region counts for the latency runs (10^6 takes a few minutes)",
    )
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--build-images", type=int, default=400)
    parser.add_argument(
        "--forward-ms",
        type=float,
        nargs="+",
        default=[10.0, 50.0],
        help="simulated model times per image for the pipelined build runs",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--open-only",
        action="store_true",
        help="only time SegmentIndex.open (verified and fast path) at each of --sizes",
    )
    parser.add_argument(
        "--scale",
        action="store_true",
        help="open time, RSS after open, recall@10 and click latency at each of --sizes",
    )
    parser.add_argument("--factories", nargs="+", default=None, help="factories for --scale")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="peak RSS of the merge of a sharded build at each of --sizes vs one shard's size",
    )
    parser.add_argument(
        "--shard-images", type=int, default=SHARD_IMAGES, help="images per shard (--merge)"
    )
    parser.add_argument(
        "--in-memory",
        action="store_true",
        help="--merge: also run the in-memory merge (holds the whole index) on the same shards",
    )
    parser.add_argument("--repeats", type=int, default=3, help="opens timed per case (--open-only)")
    parser.add_argument(
        "--work", type=Path, default=None, help="scratch folder (default: a temp folder)"
    )
    args = parser.parse_args(argv)
    faiss.omp_set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="bench_index_", dir=args.work))
    started = time.perf_counter()
    try:
        if args.scale:
            report = {
                "machine": machine_info(),
                "settings": {
                    "dim": DIM,
                    "threads": args.threads,
                    "queries": args.queries,
                    "recall_k": SCALE_K,
                    "click_k": CLICK_K,
                    "regions_per_level": REGIONS_PER_LEVEL,
                    "clusters": CENTERS,
                    "spread": SPREAD,
                },
                "command": "benchmarks/bench_index.py " + " ".join(argv or sys.argv[1:]),
                "scale": [
                    row
                    for size in args.sizes
                    for row in bench_scale(
                        work,
                        size,
                        args.factories or [choose_factory(size)],
                        args.queries,
                        args.threads,
                    )
                ],
            }
            return _write_report(args.out, report, started)
        if args.merge:
            report = {
                "machine": machine_info(),
                "settings": {
                    "dim": DIM,
                    "threads": args.threads,
                    "regions_per_level": REGIONS_PER_LEVEL,
                    "shard_images": args.shard_images,
                },
                "command": "benchmarks/bench_index.py " + " ".join(argv or sys.argv[1:]),
                "merge": [
                    row
                    for size in args.sizes
                    for row in bench_merge(
                        work, size, args.shard_images, args.threads, args.in_memory
                    )
                ],
            }
            return _write_report(args.out, report, started)
        if args.open_only:
            report = {
                "machine": machine_info(),
                "settings": {"dim": DIM, "threads": args.threads, "repeats": args.repeats},
                "command": "benchmarks/bench_index.py " + " ".join(argv or sys.argv[1:]),
                "open": [
                    row for size in args.sizes for row in bench_open(work, size, args.repeats)
                ],
            }
            return _write_report(args.out, report, started)
        report = {
            "machine": machine_info(),
            "settings": {
                "dim": DIM,
                "k": 20,
                "threads": args.threads,
                "queries": args.queries,
                "regions_per_level": REGIONS_PER_LEVEL,
                "clusters": CENTERS,
                "spread": SPREAD,
            },
            "build": bench_build(work, args.build_images, args.forward_ms),
        }
        print(json.dumps(report["build"]), flush=True)
        report["query"] = [
            row for size in args.sizes for row in bench_size(work, size, args.queries)
        ]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _write_report(args.out, report, started)


def _write_report(out: Path, report: dict, started: float) -> None:
    report["total_seconds"] = round(time.perf_counter() - started, 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
