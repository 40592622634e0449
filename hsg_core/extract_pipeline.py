"""Pipelined extraction for index builds: model-free stages in DataLoader workers, device batched.

    worker processes (num_workers=N)              this process
    decode -> downscale -> HED edge map, or  ->   a window of `batch_size` images in path order,
    the oversegmentation (`Preparer.read`)        one backbone forward per working size among
                                                  them, then tree / grouping per image -> the
                                                  index writer, in path order

HED runs in the workers on the model's device (CPU workers are forked; on a GPU they are
spawned, as CUDA cannot be used in a forked child); torch gives each worker one thread. With
the contour hierarchy the tree needs the backbone's features, so it is built after the device
stage, in this process.

`PipelinedExtractor` is an `index.extraction.Extractor` (a batch of paths -> per path a
Prediction or the exception it raised) with a `stream(paths)` that `index.extraction.run_shards`
feeds every path of a build, so the workers run ahead across batches and shards. A bad file is
returned as its exception, as `make_extractor` does; it never stops the build.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from pathlib import Path

from torch.utils.data import DataLoader, Dataset

from .predictor import HSGPredictor
from .prepare import Prepared, Preparer
from .types import Prediction

LOG = logging.getLogger(__name__)
Result = Prediction | Exception


def portable(err: Exception) -> Exception:
    """`err` in a form that crosses processes (the way back from a worker): a builtin exception or
    one of hsg_core's (their one argument is the message) as it is, any other as its nearest builtin
    base class (ValueError, OSError, ...) with its message, so a bad file's one-line reason arrives
    unchanged."""
    for base in type(err).__mro__:
        if base.__module__ == "builtins" or base.__module__.startswith("hsg_core."):
            return err if base is type(err) else base(str(err))
    return RuntimeError(str(err))


def read_prepared(preparer: Preparer, path: Path, max_side: int) -> Prepared | Exception:
    """`preparer.read(path)`, or the exception it raised (one bad file never stops a build)."""
    try:
        return preparer.read(path, max_side)
    except Exception as err:  # noqa: BLE001 - reported per image, as the per-image path does
        return portable(err)


def keep(item):
    """The DataLoader's collate_fn: items pass unchanged (no conversion to tensors)."""
    return item


class PreparedImages(Dataset):
    """Item i: `Prepared` of paths[i], or the exception reading or preparing it raised."""

    def __init__(self, paths: Sequence[Path], preparer: Preparer, max_side: int = 0) -> None:
        self.paths, self.preparer, self.max_side = list(paths), preparer, max_side

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Prepared | Exception:
        return read_prepared(self.preparer, self.paths[i], self.max_side)


class PipelinedExtractor:
    """Index extractor: CPU stages in `workers` processes, the backbone batched, results in order.

    Args:
        predictor: the model; its device decides where HED runs in the workers.
        workers: DataLoader worker processes (0: every stage in this process, still batched).
        batch_size: images per device window (one forward per working size among them).
        max_side: None reads images in the predictor's input frame (`predictor.input_side`, as the
            explorer and the per-image path do); 0: full size.

    `stage_seconds` sums, over the images extracted, the time of each stage the predictions
    report (decode, edges or overseg, features, tree and levels or grouping); `images` counts them.
    """

    def __init__(
        self,
        predictor: HSGPredictor,
        *,
        workers: int = 1,
        batch_size: int = 8,
        max_side: int | None = None,
    ) -> None:
        if workers < 0 or batch_size < 1:
            raise ValueError(f"need workers >= 0 and batch_size >= 1, got {workers}, {batch_size}")
        self.predictor, self.workers = predictor, workers
        self.batch_size = batch_size
        self.max_side = predictor.input_side if max_side is None else max_side
        self.stage_seconds: dict[str, float] = {}
        self.images = 0

    def __call__(self, paths: list[Path]) -> list[Result]:
        """Every stage in this process (run_shards' fallback when a stream fails)."""
        preparer = self.predictor.preparer()
        return list(self._device_stage(read_prepared(preparer, p, self.max_side) for p in paths))

    def stream(self, paths: Sequence[Path]) -> Iterator[Result]:
        """One result per path, in order; the workers prepare ahead while the device runs."""
        items = iter(self.loader(paths))
        try:
            yield from self._device_stage(items)
        finally:
            del items  # shuts the workers down, also when the consumer stops early

    def loader(self, paths: Sequence[Path]) -> DataLoader:
        """DataLoader of `PreparedImages`: one item at a time, in order, enough in flight for
        the next window while the device runs this one."""
        dataset = PreparedImages(paths, self.predictor.preparer(), self.max_side)
        if self.workers == 0:
            return DataLoader(dataset, batch_size=None, collate_fn=keep)
        spawn = self.predictor.device.type != "cpu"
        return DataLoader(
            dataset,
            batch_size=None,
            collate_fn=keep,
            num_workers=self.workers,
            prefetch_factor=max(2, math.ceil(2 * self.batch_size / self.workers)),
            multiprocessing_context="spawn" if spawn else None,
        )

    def _device_stage(self, items: Iterable[Prepared | Exception]) -> Iterator[Result]:
        items = iter(items)
        while window := list(islice(items, self.batch_size)):
            results = self._predict_window(window)
            self._count(results)
            yield from results

    def _predict_window(self, window: list[Prepared | Exception]) -> list[Result]:
        """Predictions for the prepared items of `window`; its exceptions stay in place."""
        rows = [i for i, item in enumerate(window) if isinstance(item, Prepared)]
        results: list[Result] = list(window)  # type: ignore[arg-type]
        for i, result in zip(rows, self._predict([window[i] for i in rows])):
            results[i] = result
        return results

    def _predict(self, prepared: list[Prepared]) -> list[Result]:
        """Batched; when the batch raises, image by image, so the error lands on its image."""
        if not prepared:
            return []
        try:
            return list(self.predictor.predict_prepared(prepared))
        except Exception as err:  # noqa: BLE001 - a failing image must not end the build
            if len(prepared) == 1:
                return [err]
            LOG.warning("a batch of %d images failed (%s); image by image", len(prepared), err)
            return [result for item in prepared for result in self._predict([item])]

    def _count(self, results: list[Result]) -> None:
        for result in results:
            if isinstance(result, Prediction):
                self.images += 1
                for stage, seconds in result.meta.get("seconds", {}).items():
                    self.stage_seconds[stage] = self.stage_seconds.get(stage, 0.0) + seconds
