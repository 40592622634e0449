"""Runs the model over the images of this rank's shards and commits each shard.

The model is a callable (`Extractor`) given by the caller; this module only batches paths,
hashes files, turns predictions into region rows and records images that failed. An extractor
that also has `stream(paths)` (`StreamingExtractor`, e.g. `hsg_core.extract_pipeline`) is given
every path of the call's shards at once and consumed in order, batch by batch, so it can work
ahead of the writer (worker processes preparing images while the model runs).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from itertools import islice
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from tqdm.auto import tqdm

from .dataset import file_digest
from .errors import InvalidPredictionError
from .records import RegionRows, prediction_rows, rows_to_table
from .shards import Plan, committed_shards, write_shard

LOG = logging.getLogger(__name__)

Extractor = Callable[[list[Path]], list[Any]]  # absolute paths -> Prediction or Exception per path
ProgressFn = Callable[[int, int], None]  # (images done, images total)


@runtime_checkable
class StreamingExtractor(Protocol):
    """An `Extractor` that can also take every path up front and yield one result per path, in
    order (a Prediction or the exception it raised), working ahead of its consumer. When the stream
    itself raises, the remaining batches go through `__call__`."""

    def __call__(self, paths: list[Path]) -> list[Any]: ...

    def stream(self, paths: Sequence[Path]) -> Iterator[Any]: ...


class _ShardBuilder:
    """Collects the rows and image records of one shard until it is committed."""

    def __init__(self) -> None:
        self.rows: list[RegionRows] = []
        self.records: list[dict] = []
        self.dim: int | None = None

    def add_batch(self, data_root: Path, batch: list[tuple[str, int]], results: list[Any]) -> None:
        """Records one extracted batch: hashes each file, converts predictions, notes failures."""
        for (rel, slot), result in zip(batch, results):
            if not _is_utf8(rel):  # Parquet strings are UTF-8: such a name cannot be stored
                self.add_failure(rel, "", "file name is not valid UTF-8; rename the file")
                continue
            try:
                digest = file_digest(data_root / rel)
            except OSError as err:
                self.add_failure(rel, "", f"{type(err).__name__}: {err}")
                continue
            if isinstance(result, BaseException):
                self.add_failure(rel, digest, f"{type(result).__name__}: {result}")
            else:
                self.add_prediction(rel, digest, slot, result)

    def add_prediction(self, rel: str, digest: str, slot: int, prediction: Any) -> None:
        try:
            rows = prediction_rows(prediction, rel, digest, slot)
            if self.dim is not None and rows.vectors.shape[1] != self.dim:
                raise InvalidPredictionError(
                    f"{rel}: embedding size {rows.vectors.shape[1]}, other images have {self.dim}"
                )
        except InvalidPredictionError as err:
            self.add_failure(rel, digest, f"{type(err).__name__}: {err}")
            return
        self.dim = rows.vectors.shape[1]
        self.rows.append(rows)
        self.records.append(
            {"image": rel, "hash": digest, "slot": slot, "status": "ok", "error": None}
        )

    def add_failure(self, rel: str, digest: str, message: str) -> None:
        LOG.warning("skipping %s: %s", rel, message)
        self.records.append({"image": rel, "hash": digest, "status": "skipped", "error": message})

    def commit(self, out_dir: Path, shard: int, checkpoint_hash: str) -> None:
        table = rows_to_table(self.rows)
        write_shard(out_dir, shard, table, self.records, checkpoint_hash)


def run_shards(
    out_dir: Path,
    plan: Plan,
    shards: Sequence[int],
    extract: Extractor,
    *,
    batch_size: int,
    progress: ProgressFn | None,
    should_stop: Callable[[], bool] | None,
) -> tuple[bool, int, int]:
    """Extracts and commits every shard in `shards` that is not committed yet.

    The index-side work of a batch (hashing, validation, RLE) runs in a worker thread, and
    shard writes in another, while the main thread runs `extract` on the next batch, so a
    model that releases the GIL (GPU, or torch CPU kernels) overlaps with them.

    Returns:
        (all shards done, images done, images total) for this call's shards.
    """
    done_shards = committed_shards(out_dir)
    total = sum(len(plan.shard_items(s)) for s in shards)
    done = sum(len(plan.shard_items(s)) for s in shards if s in done_shards)
    report = _progress_reporter(progress, done, total)
    data_root = Path(plan.data_root)
    todo = [s for s in shards if s not in done_shards]
    batches = [
        [data_root / rel for rel, _ in plan.shard_items(s)[start : start + batch_size]]
        for s in todo
        for start in range(0, len(plan.shard_items(s)), batch_size)
    ]
    pending: Future | None = None
    commits: list[Future] = []
    try:
        with (
            closing(_results_by_batch(extract, batches)) as extracted,
            ThreadPoolExecutor(1, "index-rows") as worker,
            ThreadPoolExecutor(1, "index-commit") as committer,
        ):
            for shard in todo:
                builder = _ShardBuilder()
                items = plan.shard_items(shard)
                for start in range(0, len(items), batch_size):
                    if should_stop is not None and should_stop():
                        LOG.info("stop requested: shard %d not committed", shard)
                        _wait(pending, *commits)
                        return False, done, total
                    batch = items[start : start + batch_size]
                    results = next(extracted)
                    _wait(pending, *[c for c in commits if c.done()])
                    pending = worker.submit(builder.add_batch, data_root, batch, results)
                    done += len(batch)
                    report(done)
                _wait(pending)
                commits.append(
                    committer.submit(builder.commit, out_dir, shard, plan.checkpoint_hash)
                )
            _wait(pending, *commits)
    finally:
        report(None)
    return True, done, total


def _is_utf8(name: str) -> bool:
    """False for names holding undecodable bytes (os.fsdecode's surrogate escapes)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _wait(*tasks: Future | None) -> None:
    """Waits for background tasks, re-raising the first exception."""
    for task in tasks:
        if task is not None:
            task.result()


def _results_by_batch(extract: Extractor, batches: list[list[Path]]) -> Iterator[list[Any]]:
    """One list of results per batch of paths, in order: from the extractor's stream when it
    has one (all paths at once), else one call per batch."""
    if not isinstance(extract, StreamingExtractor):
        for paths in batches:
            yield _extract_each(extract, paths)
        return
    stream = iter(extract.stream([p for paths in batches for p in paths]))
    try:
        for number, paths in enumerate(batches):
            try:
                results = list(islice(stream, len(paths)))
            except Exception as err:  # noqa: BLE001 - the rest goes batch by batch instead
                LOG.warning("extractor stream failed (%s); continuing batch by batch", err)
                for rest in batches[number:]:
                    yield _extract_each(extract, rest)
                return
            if len(results) != len(paths):
                raise ValueError(
                    f"extractor stream ended after {len(results)} of {len(paths)} images"
                )
            yield results
    finally:
        getattr(stream, "close", lambda: None)()  # stops its workers when the build stops early


def _extract_each(extract: Extractor, paths: list[Path]) -> list[Any]:
    """One result per path; when the whole batch raises, retries the paths one by one."""
    if not paths:
        return []
    try:
        results = list(extract(paths))
    except Exception as err:  # noqa: BLE001 - a failing image must not end the build
        if len(paths) == 1:
            return [err]
        LOG.warning(
            "extractor raised on a batch of %d images (%s); retrying one by one", len(paths), err
        )
        return [result for path in paths for result in _extract_each(extract, [path])]
    if len(results) != len(paths):
        raise ValueError(f"extractor returned {len(results)} results for {len(paths)} images")
    return results


def _progress_reporter(
    progress: ProgressFn | None, done: int, total: int
) -> Callable[[int | None], None]:
    """A function reporting the images done (None = finished): the callback, or a tqdm bar."""
    if progress is not None:
        progress(done, total)
        return lambda now: None if now is None else progress(now, total)
    bar = tqdm(total=total, initial=done, unit="img", desc="indexing", smoothing=0.1)

    def report(now: int | None) -> None:
        if now is None:
            bar.close()
        else:
            bar.update(now - bar.n)

    return report
