"""Streamed commit: the shards (and, for an update, the base generation) become a new generation
with one batch of rows and one block of IVF lists in memory at a time, never the whole index.

`commit.commit_job` takes this path whenever the new index is IVF (the automatic choice past
`factory.FLAT_MAX_VECTORS` vectors, or an "IVF..." factory); a Flat index (the automatic choice up
to FLAT_MAX_VECTORS, so small) keeps the in-memory commit. A build writes byte for byte the files
of the in-memory commit of the same shards; an update writes the same metadata and vectors and
the same inverted-list entries (in id order within each list, where the in-place update of the
in-memory commit appends). `SegmentIndex.open` reads them unchanged (the faiss file memory-mapped
with ``IO_FLAG_MMAP_IFC`` when asked).

The rows come from *sources*, in id order: the kept rows of the base generation (an update), then
each shard. Ids are level-major (`index.ids`) and, within a level, grow with the slot, and slots
grow with the plan (new images get slots above the base's), so the rows of one level are the
sources' rows of that level, source after source. Passes, each holding one batch at a time:

1. survey: every source is checked (sha256, checkpoint, finite unit vectors, one vector size) and
   its rows are counted per level.
2. quantizer: the base's when an update keeps its IVF factory (as the in-place update did);
   otherwise trained once on the rows `factory.training_rows` picks in id order (the in-memory
   commit's sample), gathered source by source. Every block of lists is written against it.
3. rows in id order: level by level, source by source, into the metadata (Parquet row groups of
   `io.METADATA_ROW_GROUP`), the vectors (.npy) and IVF *blocks*: empty copies of the trained index
   filled, in the `factory.ADD_CHUNK` chunks of the in-memory commit, with at most `BLOCK_BYTES`
   of codes and ids, then written to a temp file by faiss.
4. lists: the faiss file is the trained index's own serialization (ntotal set) up to its empty
   inverted lists, then the lists in faiss's ArrayInvertedLists layout ("ilar": the list sizes,
   then per list its codes and its ids), each list gathered from the blocks with pread. Each block
   is checked to hold the same quantizer and that layout before its lists are copied.

Everything is written under ``pending/merge/`` and moved into place at the end; the manifest stays
the commit point, so an interruption leaves the previous state, and a rerun starts the merge over.

Why not `faiss.contrib.ondisk.merge_ondisk`: `OnDiskInvertedLists.merge_from_multiple` writes
through a shared mapping of the whole merged file, so every merged page counts in the merging
process's RSS; and its index is two files, the path of the second stored inside the first (a moved
folder needs IO_FLAG_ONDISK_SAME_DIR, which prints to stdout). Copying lists with pread/write keeps
one list in memory and gives the usual single file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from . import factory as index_factory
from . import io as index_io
from .checks import check_vectors
from .errors import IndexFormatError
from .factory import (
    FLAT,
    choose_factory,
    create_index,
    default_nprobe,
    ivf_of,
    needs_rerank,
    train_on_sample,
    training_rows,
)
from .records import METADATA_SCHEMA, VECTOR_COLUMN, split_vectors
from .shards import Plan, open_shard, pending_dir, read_shard, shard_path

LOG = logging.getLogger(__name__)
MERGE_DIR = "merge"  # under pending/: the files of a streamed commit until they are moved in
BLOCK_BYTES = 1 << 25  # codes + ids of one IVF block held in memory before it goes to disk
BATCH_ROWS = 1 << 12  # shard rows decoded at a time
_ID_BYTES = 8  # faiss idx_t


@dataclass
class StreamedGeneration:
    """What a streamed commit wrote.

    Attributes:
        files: manifest entry (name, bytes, sha256) per data file kind.
        factory: faiss factory used; auto: chosen by size.
        dim: vector size.
        per_level: regions per level.
        images: distinct images with regions.
        nprobe: lists probed per query.
        rerank: the codes are lossy (see `factory.needs_rerank`).
        skipped: records of the images the shards skipped, in shard order.
    """

    files: dict[str, dict]
    factory: str
    auto: bool
    dim: int
    per_level: list[int]
    images: int
    nprobe: int
    rerank: bool
    skipped: list[dict]


@dataclass
class Survey:
    """Per source and level row counts of a pending job (pass 1).

    Attributes:
        dim: vector size of every source.
        level_counts: [S, L] int64 rows of source s at level l.
        shard_images: distinct images of the shards' rows (an image's rows are in one shard).
        skipped: records of the images the shards skipped, in shard order.
    """

    dim: int
    level_counts: np.ndarray
    shard_images: int
    skipped: list[dict]

    @property
    def num_rows(self) -> int:
        return int(self.level_counts.sum())

    def chunk_starts(self) -> np.ndarray:
        """[S, L] int64 position, in id order, of the first row of source s at level l."""
        per_level = self.level_counts.sum(axis=0)
        level_starts = np.cumsum(per_level) - per_level
        return level_starts[None, :] + np.cumsum(self.level_counts, axis=0) - self.level_counts


def streamed_commit(out_dir: Path, plan: Plan, factory: str | None) -> StreamedGeneration | None:
    """Writes the next generation from the committed shards (see the module docstring).

    Args:
        out_dir: index folder.
        plan: the pending job, every shard committed.
        factory: faiss factory, or None (keep the base's, or choose by size).

    Returns:
        What was written (not committed: the caller writes the manifest), or None when the new
        index is Flat, empty or of an IVF type whose faiss file does not end with its inverted
        lists: the in-memory commit handles those.

    Raises:
        IndexFormatError: a damaged shard or base file, sources of different vector sizes or out
            of id order, or a block of lists of another quantizer (each message names the file).
        ValueError: too few vectors for the factory's lists.
    """
    base = _base_manifest(out_dir, plan)
    sources = [_ShardSource(out_dir, shard) for shard in range(plan.num_shards)]
    if base is not None:
        sources.insert(0, _BaseSource(out_dir, base, plan.remove))
    regions = sum(source.rows(plan) for source in sources)
    auto = factory is None and (base is None or base["factory_auto"])
    chosen = choose_factory(regions) if auto else (factory or base["factory"])
    if regions == 0 or chosen.strip() == FLAT:
        return None
    survey = survey_sources(sources, plan, None if base is None else base["dim"])
    reused = base is not None and chosen == base["factory"]
    trained = _base_quantizer(out_dir, base) if reused else create_index(chosen, survey.dim)
    trained = ivf_of(trained)
    if trained is None or lists_prefix(trained, 0) is None:
        LOG.info("%s: faiss file does not end with its lists; committing in memory", chosen)
        return None
    work = pending_dir(out_dir) / MERGE_DIR
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    generation = 1 if base is None else base["generation"] + 1
    try:
        if not reused:
            rows = training_rows(survey.num_rows, trained.nlist)
            train_on_sample(trained, training_sample(sources, survey, rows))
            trained.nprobe = default_nprobe(trained.nlist)
        blocks = _write_rows(sources, survey, trained, work)
        write_faiss_file(work / "index", trained, blocks)
        names = index_io.generation_names(generation)
        files = {
            kind: index_io.move_data_file(work / kind, Path(out_dir) / names[kind])
            for kind in index_io.DATA_FILES
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    kept_images = 0 if base is None else base["counts"]["images"] - len(plan.remove)
    return StreamedGeneration(
        files=files,
        factory=chosen,
        auto=auto,
        dim=survey.dim,
        per_level=survey.level_counts.sum(axis=0).tolist(),  # the top level has regions
        images=kept_images + survey.shard_images,
        nprobe=int(trained.nprobe),
        rerank=needs_rerank(trained),
        skipped=survey.skipped,
    )


def _base_manifest(out_dir: Path, plan: Plan) -> dict | None:
    """The manifest of the generation an update applies to (None for a build)."""
    if plan.base_generation is None:
        return None
    base = index_io.read_manifest(out_dir)
    if base["generation"] != plan.base_generation:
        raise IndexFormatError(
            f"{pending_dir(out_dir)}: pending update was planned on generation "
            f"{plan.base_generation}, the index is at {base['generation']}"
        )
    return base


def _base_quantizer(out_dir: Path, base: dict) -> faiss.Index:
    """The base's faiss index, checked against its sha256, with its lists emptied: its trained
    quantizer (and codes), nprobe kept."""
    path = index_io.data_file(out_dir, base, "index")
    index_io.verify_data_file(path, base, "index")
    index = index_io.read_faiss(path, mmap=True)
    ivf = ivf_of(index)
    if ivf is not None:
        empty = faiss.ArrayInvertedLists(ivf.nlist, ivf.code_size)
        ivf.replace_invlists(empty, True)
        empty.this.disown()  # owned by the index from now on
        ivf.ntotal = 0
    return index


def survey_sources(sources: list, plan: Plan, dim: int | None) -> Survey:
    """Pass 1: checks every source (sha256, checkpoint, finite unit vectors of one size, `dim`
    when given), batch by batch; counts its rows per level."""
    counts, skipped, images = [], [], 0
    for source in sources:
        skipped.extend(source.check(plan))
        source_counts, names = np.zeros(1, np.int64), set()
        is_shard = isinstance(source, _ShardSource)
        columns = ["id", "level", "image"] if is_shard else ["id", "level"]
        for table, vectors in source.batches(None, columns):
            if dim is not None and vectors.shape[1] != dim:
                raise IndexFormatError(
                    f"{source.vectors_path}: holds {vectors.shape[1]}-d vectors, the sources "
                    f"before it {dim}-d ones; delete it and rerun the job to extract its images "
                    "again"
                )
            dim = vectors.shape[1]
            check_vectors(vectors, source.vectors_path, table.column("id").to_numpy())
            found = np.bincount(table.column("level").to_numpy(), minlength=source_counts.size)
            source_counts = np.pad(source_counts, (0, found.size - source_counts.size)) + found
            if is_shard:
                names.update(pc.unique(table.column("image")).to_pylist())
        counts.append(source_counts)
        images += len(names)
    width = max(c.size for c in counts)
    level_counts = np.stack([np.pad(c, (0, width - c.size)) for c in counts]).astype(np.int64)
    return Survey(int(dim or 0), level_counts, images, skipped)


def training_sample(sources: list, survey: Survey, rows: np.ndarray) -> np.ndarray:
    """[M, D] float32 vectors at `rows` ([M] sorted positions in id order), read batch by batch."""
    sample = np.empty((rows.size, survey.dim), np.float32)
    starts = survey.chunk_starts()
    for number, source in enumerate(sources):
        ends = starts[number] + survey.level_counts[number]
        if not (np.searchsorted(rows, ends) > np.searchsorted(rows, starts[number])).any():
            continue
        seen = starts[number].copy()  # [L] position (in id order) of the next row of each level
        for table, vectors in source.batches(None, ["level"]):
            levels = table.column("level").to_numpy()
            for level in np.unique(levels):
                here = np.flatnonzero(levels == level)
                first, last = np.searchsorted(rows, [seen[level], seen[level] + here.size])
                sample[first:last] = vectors[here[rows[first:last] - seen[level]]]
                seen[level] += here.size
    return sample


def _write_rows(sources: list, survey: Survey, trained: faiss.IndexIVF, work: Path) -> ListBlocks:
    """Pass 3: every row, in id order, into ``work/metadata``, ``work/vectors`` and IVF blocks
    (returned)."""
    metadata = _RowGroups(index_io.metadata_writer(work / "metadata", METADATA_SCHEMA))
    blocks = ListBlocks(trained, work)
    last_id, written = -1, 0
    with open(work / "vectors", "wb") as vectors_file:
        index_io.write_npy_header(vectors_file, survey.num_rows, survey.dim)
        for level in range(survey.level_counts.shape[1]):
            for number in np.flatnonzero(survey.level_counts[:, level]).tolist():
                for table, vectors in sources[number].batches(level, None):
                    at_level = np.flatnonzero(table.column("level").to_numpy() == level)
                    if not at_level.size:
                        continue
                    table = table.take(pa.array(at_level)).select(METADATA_SCHEMA.names)
                    vectors = np.ascontiguousarray(vectors[at_level])
                    ids = table.column("id").to_numpy()
                    _check_increasing(ids, last_id, sources[number].path)
                    last_id, written = int(ids[-1]), written + ids.size
                    metadata.write(table)
                    vectors.tofile(vectors_file)
                    blocks.add(vectors, ids)
    metadata.close()
    blocks.close()
    if written != survey.num_rows:
        raise IndexFormatError(
            f"{work.parent}: shards changed during the merge "
            f"({written} rows read, {survey.num_rows} counted); rerun the merge"
        )
    return blocks


class _ShardSource:
    """The rows of one committed shard (they follow the rows of the shards before it)."""

    def __init__(self, out_dir: Path, shard: int) -> None:
        self.out_dir, self.shard, self.path = Path(out_dir), shard, shard_path(out_dir, shard)
        self.vectors_path = self.path  # the file named when a vector is refused

    def rows(self, plan: Plan) -> int:
        """Rows, from the Parquet footer (a footer that cannot be read: the whole shard is read,
        so a damaged shard is refused with its checksum message)."""
        try:
            return pq.ParquetFile(self.path).metadata.num_rows
        except (OSError, pa.ArrowException):
            return read_shard(self.out_dir, self.shard, plan.checkpoint_hash)[0].num_rows

    def check(self, plan: Plan) -> list[dict]:
        """Checks the file against its sha256 and checkpoint; the records of its skipped images."""
        records = open_shard(self.out_dir, self.shard, plan.checkpoint_hash)[1]
        return [record for record in records if record["status"] == "skipped"]

    def batches(
        self, level: int | None, columns: list[str] | None
    ) -> Iterator[tuple[pa.Table, np.ndarray]]:
        """(metadata `columns` (None: all), [n, D] float32 vectors) per batch, in file order."""
        try:
            parquet = pq.ParquetFile(
                self.path, buffer_size=1 << 20, page_checksum_verification=True
            )
            wanted = None if columns is None else [*columns, VECTOR_COLUMN]
            for batch in parquet.iter_batches(batch_size=BATCH_ROWS, columns=wanted):
                yield split_vectors(pa.Table.from_batches([batch]))
        except (OSError, pa.ArrowException) as err:
            raise IndexFormatError(f"{self.path}: corrupt Parquet file ({err})") from err


class _BaseSource:
    """The rows of an update's base generation that stay (those of images not in `removed`), read
    by row group from its metadata and vector files (in id order: before every shard's rows of
    each level, since new images get new, higher slots)."""

    def __init__(self, out_dir: Path, base: dict, removed: list[str]) -> None:
        self.base = base
        self.path = index_io.data_file(out_dir, base, "metadata")
        self.vectors_path = index_io.data_file(out_dir, base, "vectors")
        self.removed = pa.array(sorted(removed), pa.string())
        self.parquet = index_io.open_parquet(self.path)
        meta = self.parquet.metadata
        sizes = [meta.row_group(group).num_rows for group in range(meta.num_row_groups)]
        self.group_starts = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
        self.group_levels = [self._levels_of(group) for group in range(meta.num_row_groups)]

    def rows(self, plan: Plan) -> int:
        """Rows kept (the image column is read by row group)."""
        return sum(table.num_rows for table in self._groups(None, ["image"]))

    def check(self, plan: Plan) -> list[dict]:
        """Checks the metadata and vector files against their sha256; nothing is skipped."""
        if self.base["dim"] != index_io.read_vectors(self.vectors_path, mmap=True).shape[1]:
            raise IndexFormatError(f"{self.vectors_path}: not of the manifest's vector size")
        for kind, path in (("metadata", self.path), ("vectors", self.vectors_path)):
            index_io.verify_data_file(path, self.base, kind)
        return []

    def batches(
        self, level: int | None, columns: list[str] | None
    ) -> Iterator[tuple[pa.Table, np.ndarray]]:
        """(metadata `columns` (None: all), [n, D] float32 vectors) of the kept rows per row group
        (only the groups that hold `level`, when given)."""
        for table in self._groups(level, columns, with_rows=True):
            yield table.drop_columns(["_row"]), self._vectors(table.column("_row").to_numpy())

    def _groups(
        self, level: int | None, columns: list[str] | None, with_rows: bool = False
    ) -> Iterator[pa.Table]:
        wanted = None if columns is None else sorted({*columns, "image"})
        for group in range(len(self.group_levels)):
            low, high = self.group_levels[group]
            if level is not None and not low <= level <= high:
                continue
            table = index_io.read_row_group(self.parquet, self.path, group, wanted)
            if with_rows:
                start, stop = self.group_starts[group], self.group_starts[group + 1]
                table = table.append_column("_row", pa.array(np.arange(start, stop)))
            keep = pc.invert(pc.is_in(table.column("image"), self.removed))
            table = table.filter(keep)
            if columns is not None:
                table = table.select([*columns, "_row"] if with_rows else columns)
            yield table

    def _vectors(self, rows: np.ndarray) -> np.ndarray:
        """[n, D] float32 vectors of the (ascending) base `rows`."""
        if not rows.size:
            return np.zeros((0, self.base["dim"]), np.float32)
        block = index_io.read_vector_rows(self.vectors_path, int(rows[0]), int(rows[-1]) + 1)
        return block[rows - rows[0]]

    def _levels_of(self, group: int) -> tuple[int, int]:
        """(lowest, highest) level in a row group, from its statistics (or its level column)."""
        column = self.parquet.schema_arrow.get_field_index("level")
        stats = self.parquet.metadata.row_group(group).column(column).statistics
        if stats is not None and stats.has_min_max:
            return int(stats.min), int(stats.max)
        levels = index_io.read_row_group(self.parquet, self.path, group, ["level"])
        return int(pc.min(levels.column(0)).as_py()), int(pc.max(levels.column(0)).as_py())


def _check_increasing(ids: np.ndarray, last_id: int, path: Path) -> None:
    """Refuses rows whose ids do not continue the id order (a shard of another plan)."""
    if ids[0] <= last_id or (ids.size > 1 and not (np.diff(ids) > 0).all()):
        raise IndexFormatError(
            f"{path}: region ids out of order or repeated (a shard of another job?); "
            "delete it and rerun the job to extract its images again"
        )


class _RowGroups:
    """Writes tables to a Parquet writer in row groups of exactly `io.METADATA_ROW_GROUP` rows
    (the last one shorter), whatever the sizes of the tables given."""

    def __init__(self, writer: pq.ParquetWriter) -> None:
        self._writer = writer
        self._held: list[pa.Table] = []
        self._rows = 0

    def write(self, table: pa.Table) -> None:
        self._held.append(table)
        self._rows += table.num_rows
        group = index_io.METADATA_ROW_GROUP
        if self._rows >= group:
            held = pa.concat_tables(self._held)
            full = self._rows - self._rows % group
            self._writer.write_table(held.slice(0, full), row_group_size=group)
            self._held, self._rows = [held.slice(full)], self._rows - full

    def close(self) -> None:
        if self._rows:
            table = pa.concat_tables(self._held)
            self._writer.write_table(table, row_group_size=index_io.METADATA_ROW_GROUP)
        self._writer.close()


class ListBlocks:
    """IVF lists written block by block against one trained (empty) index.

    Vectors are added in the `factory.ADD_CHUNK` chunks of `factory.add_vectors` (counted from
    the first row), to an empty copy of `trained`; the copy is written to ``folder`` by faiss once
    it holds about `BLOCK_BYTES` of codes and ids, and dropped.

    Attributes:
        files: the block files, in order.
        sizes: per block, [nlist] uint64 list sizes.
        counts: per block, vectors held.
    """

    def __init__(self, trained: faiss.IndexIVF, folder: Path) -> None:
        self.trained, self.folder = trained, Path(folder)
        chunk = index_factory.ADD_CHUNK
        entry = trained.code_size + _ID_BYTES
        self.block_rows = max(1, BLOCK_BYTES // (chunk * entry)) * chunk
        self.files: list[Path] = []
        self.sizes: list[np.ndarray] = []
        self.counts: list[int] = []
        self._vectors = np.empty((chunk, trained.d), np.float32)  # the chunk being filled
        self._ids = np.empty(chunk, np.int64)
        self._held = 0
        self._block: faiss.IndexIVF | None = None

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        """Adds [n, D] float32 vectors with their [n] int64 ids (the next rows in id order)."""
        done = 0
        while done < ids.size:
            count = min(self._ids.size - self._held, ids.size - done)
            self._vectors[self._held : self._held + count] = vectors[done : done + count]
            self._ids[self._held : self._held + count] = ids[done : done + count]
            self._held, done = self._held + count, done + count
            if self._held == self._ids.size:
                self._add_chunk(self._vectors, self._ids)
                self._held = 0

    def close(self) -> None:
        """Adds the last partial chunk and writes the last block."""
        if self._held:
            self._add_chunk(self._vectors[: self._held], self._ids[: self._held])
            self._held = 0
        if self._block is not None:
            self._flush()

    def _add_chunk(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        if self._block is None:
            self._block = ivf_of(faiss.clone_index(self.trained))
        self._block.add_with_ids(vectors, ids)  # copied into the lists: the buffer is reused
        if self._block.ntotal >= self.block_rows:
            self._flush()

    def _flush(self) -> None:
        block = self._block
        path = self.folder / f"lists_{len(self.files):05d}.faiss"
        faiss.write_index(block, str(path))
        lists = block.invlists
        self.sizes.append(np.array([lists.list_size(j) for j in range(block.nlist)], np.uint64))
        self.files.append(path)
        self.counts.append(int(block.ntotal))
        self._block = None


def lists_header(sizes: np.ndarray, code_size: int) -> bytes:
    """How faiss's `write_InvertedLists` starts ArrayInvertedLists of these [nlist] sizes: "ilar",
    nlist, code_size, then "full" and every size, or (at most half the lists used) "sprs" and
    (list, size) pairs. The codes and ids of each non-empty list follow."""
    sizes = np.asarray(sizes, dtype=np.uint64)
    head = b"ilar" + struct.pack("=QQ", sizes.size, code_size)
    used = np.flatnonzero(sizes)
    if used.size > sizes.size // 2:
        return head + b"full" + struct.pack("=Q", sizes.size) + sizes.tobytes()
    pairs = np.stack([used.astype(np.uint64), sizes[used]], axis=1).ravel()
    return head + b"sprs" + struct.pack("=Q", pairs.size) + pairs.tobytes()


def lists_prefix(trained: faiss.IndexIVF, ntotal: int) -> bytes | None:
    """The faiss file of `trained` (empty) with `ntotal` in its header, up to its (empty) inverted
    lists; None when its serialization does not end with them (IVF types with trailing fields)."""
    copy = ivf_of(faiss.clone_index(trained))
    copy.ntotal = ntotal
    raw = faiss.serialize_index(copy).tobytes()
    empty = lists_header(np.zeros(trained.nlist, np.uint64), trained.code_size)
    return raw[: -len(empty)] if raw.endswith(empty) else None


def write_faiss_file(path: Path, trained: faiss.IndexIVF, blocks: ListBlocks) -> None:
    """Pass 4: the faiss file of `trained` filled with the lists of `blocks`, list by list.

    Raises:
        IndexFormatError: a block of another quantizer or layout (the message names its file).
    """
    code_size, total = trained.code_size, sum(blocks.counts)
    sizes = np.sum(blocks.sizes, axis=0, dtype=np.uint64) if blocks.sizes else None
    sizes = np.zeros(trained.nlist, np.uint64) if sizes is None else sizes
    with open(path, "wb") as out, contextlib.ExitStack() as stack:
        out.write(lists_prefix(trained, total))
        out.write(lists_header(sizes, code_size))
        handles = [stack.enter_context(open(file, "rb", buffering=0)) for file in blocks.files]
        starts = [
            _block_list_starts(handle.fileno(), file, trained, count, block_sizes)
            for handle, file, count, block_sizes in zip(
                handles, blocks.files, blocks.counts, blocks.sizes
            )
        ]
        for number in np.flatnonzero(sizes):
            parts = [
                (handle.fileno(), int(block_starts[number]), int(block_sizes[number]))
                for handle, block_starts, block_sizes in zip(handles, starts, blocks.sizes)
                if block_sizes[number]
            ]
            for fd, start, count in parts:
                out.write(os.pread(fd, count * code_size, start))
            for fd, start, count in parts:
                out.write(os.pread(fd, count * _ID_BYTES, start + count * code_size))
    written = index_io.read_faiss(path, mmap=True)
    if written.ntotal != total or written.invlists.compute_ntotal() != total:
        raise IndexFormatError(f"{path}: merged faiss index holds {written.ntotal} of {total}")


def _block_list_starts(
    fd: int, path: Path, trained: faiss.IndexIVF, count: int, sizes: np.ndarray
) -> np.ndarray:
    """[nlist] byte offset of each list of a block file, once the file is checked to be `trained`
    with `count` vectors in these list sizes, in faiss's ArrayInvertedLists layout."""
    head = lists_prefix(trained, count) + lists_header(sizes, trained.code_size)
    entry = trained.code_size + _ID_BYTES
    payload = int(sizes.sum()) * entry
    if os.fstat(fd).st_size != len(head) + payload or os.pread(fd, len(head), 0) != head:
        raise IndexFormatError(
            f"{path}: IVF lists not written against the merge's trained coarse quantizer "
            "(or not in faiss's ArrayInvertedLists layout); rerun the merge"
        )
    return len(head) + (np.cumsum(sizes) - sizes).astype(np.int64) * entry
