"""A Parquet dataset's row groups, listed from its files' footers, as table fragments.

Listing every footer on the client (in parallel threads, as remote stores need) gives
each row group's row count, so the planner in :mod:`.tables` can group many small files
or row groups into one task, cut a huge row group into several partitions, and know the
array's chunks without reading the data (when no row filter is left to apply).
"""

from __future__ import annotations

import os
import posixpath
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pyarrow as pa

from .filters import arrow_filter
from .tables import Fragment

EXTENSIONS = (".parq", ".parquet", ".pq")  # what dask's reader takes from a directory
FOOTER_THREADS = 16
FOOTER_CACHE = 8  # big footers a worker process keeps parsed (local files)
BIG_FOOTER = 256 << 10  # smaller footers parse in well under a millisecond
_FOOTERS: OrderedDict = OrderedDict()
_FOOTER_LOCK = threading.Lock()
# a pandas index without a name is stored as a column of this name: not data
_UNNAMED_INDEX = re.compile(r"^__index_level_\d+__$")


def data_columns(schema: pa.Schema) -> list[str]:
    """The columns a user may select (pandas' unnamed index columns left out)."""
    return [n for n in schema.names if not _UNNAMED_INDEX.match(n)]


def list_files(path: str, storage_options: dict | None = None):
    """``(filesystem, root, files)``: the data files of a file or a directory tree.

    Names starting with ``_`` or ``.`` anywhere below the root (``_SUCCESS``,
    ``_delta_log/``, hidden files) are not data; nor are files without a Parquet
    extension in a directory. Files are in natural order (``part-2`` before ``part-10``).
    """
    import fsspec
    from dask.utils import natural_sort_key

    fs, root = fsspec.core.url_to_fs(path, **(storage_options or {}))
    root = root.rstrip("/") or root
    if fs.isfile(root):
        return fs, root, [root]
    if not fs.isdir(root):
        raise FileNotFoundError(path)
    files = []
    for name in fs.find(root):
        below = posixpath.relpath(name, root).split("/")
        if any(p.startswith(("_", ".")) for p in below):
            continue
        if name.endswith(EXTENSIONS):
            files.append(name)
    return fs, root, sorted(files, key=natural_sort_key)


def open_dataset(fs, root: str, files: list[str]):
    """The ``pyarrow.dataset`` of ``files``, hive partition fields typed from the paths."""
    import pyarrow.dataset as ds

    return ds.dataset(files, filesystem=fs, format="parquet", partitioning="hive",
                      partition_base_dir=root)


def partition_columns(dataset) -> set[str]:
    """The hive partition columns (``key=value`` directories) of the dataset's files."""
    import pyarrow.dataset as ds

    return {k for frag in dataset.get_fragments()
            for k in ds.get_partition_keys(frag.partition_expression)}


@dataclass(frozen=True)
class RowGroups:
    """What a worker needs to read some row groups of one file."""

    url: str
    row_groups: tuple[int, ...]
    partition: tuple[tuple[str, object], ...]  # hive partition values, from the path
    storage_options: dict
    filters: tuple  # row filters left to apply, parsed and typed

    def read(self, columns: list[str], schema: pa.Schema) -> pa.Table:
        import fsspec
        import pyarrow.fs as pafs
        import pyarrow.parquet as pq

        fs, path = fsspec.core.url_to_fs(self.url, **self.storage_options)
        parts = dict(self.partition)
        wanted = list(dict.fromkeys([*columns, *(c for c, _, _ in self.filters)]))
        try:
            # arrow's own local file reads small files in about half the time of fsspec's
            local = self.url.startswith("file://")
            opened = (pafs.LocalFileSystem().open_input_file(path) if local
                      else fs.open(path, "rb"))
            with opened as fh:
                pf = _open_local(fh, path) if local else pq.ParquetFile(fh)
                stored = set(pf.schema_arrow.names)
                table = pf.read_row_groups(list(self.row_groups),
                                           columns=[c for c in wanted if c in stored])
        except (pa.ArrowException, OSError) as e:
            if isinstance(e, OSError) and not isinstance(e, pa.ArrowException):
                if not maybe_corrupt(e):
                    raise  # missing or unreachable: the storage's error says it best
            raise ValueError(
                f"{self.url}: cannot read row groups {_spans(self.row_groups)} "
                f"({type(e).__name__}: {' '.join(str(e).split())[:120]}): the file is "
                "corrupt or incomplete; remove or rewrite it.") from None
        for name in wanted:
            if name in table.column_names:
                continue
            if name in parts:  # a hive partition column: one value for the whole file
                table = table.append_column(
                    name, pa.array([parts[name]] * table.num_rows, schema.field(name).type))
            else:  # a column this file does not have
                table = table.append_column(name, pa.nulls(table.num_rows,
                                                           schema.field(name).type))
        expr = arrow_filter(self.filters)
        return table if expr is None else table.filter(expr)


def _open_local(fh, path: str):
    """``pq.ParquetFile`` of a local file, its footer parsed once per worker process when
    it is big (a file of thousands of row groups, read by several tasks every pass).

    The key is the path, size and modification time: a rewrite of the same size within
    one tick of the filesystem's clock would go unseen (tasks read files that a job
    does not rewrite while it runs)."""
    import pyarrow.parquet as pq

    st = os.stat(path)
    key = (path, st.st_size, st.st_mtime_ns)  # a rewritten file is another key
    with _FOOTER_LOCK:
        metadata = _FOOTERS.get(key)
        if metadata is not None:
            _FOOTERS.move_to_end(key)
    pf = pq.ParquetFile(fh, metadata=metadata)
    if metadata is None and pf.metadata.serialized_size >= BIG_FOOTER:
        with _FOOTER_LOCK:
            _FOOTERS[key] = pf.metadata
            while len(_FOOTERS) > FOOTER_CACHE:
                _FOOTERS.popitem(last=False)
    return pf


def _spans(ids: Sequence[int]) -> str:
    return f"{ids[0]}-{ids[-1]}" if len(ids) > 1 else str(ids[0])


class RowGroupReader:
    """Reads a group's fragments, merging consecutive row groups of one file into one
    read (a file of many small row groups is opened once per task, not per group)."""

    def __init__(self, schema: pa.Schema):
        self.schema = schema

    def __call__(self, tasks: list[RowGroups], columns: list[str]) -> list[pa.Table]:
        merged: list[RowGroups] = []
        for task in tasks:
            last = merged[-1] if merged else None
            if last is not None and last.url == task.url:
                merged[-1] = RowGroups(last.url, last.row_groups + task.row_groups,
                                       last.partition, last.storage_options, last.filters)
            else:
                merged.append(task)
        return [task.read(columns, self.schema) for task in merged]


def row_group_fragments(dataset, fs, filters: list, row_filters: list,
                        storage_options: dict) -> list[Fragment]:
    """One fragment per row group that the filters may select, in file order.

    Partition filters drop whole files and min/max statistics drop row groups (both
    exactly); ``row_filters`` are left for the workers to apply as they read.
    """
    import pyarrow.dataset as ds

    expr = arrow_filter(filters)
    files = list(dataset.get_fragments(filter=expr) if expr is not None
                 else dataset.get_fragments())

    def groups(frag):
        pieces = frag.split_by_row_group(filter=expr, schema=dataset.schema) \
            if expr is not None else frag.split_by_row_group()
        return [(rg.id, rg.num_rows) for piece in pieces for rg in piece.row_groups]

    threads = min(FOOTER_THREADS, len(files)) or 1
    with ThreadPoolExecutor(threads) as pool:
        per_file = list(pool.map(groups, files))
    fragments = []
    for frag, row_groups in zip(files, per_file):
        keys = ds.get_partition_keys(frag.partition_expression)
        partition = tuple(sorted(keys.items()))
        url = fs.unstrip_protocol(frag.path)
        for rg, rows in row_groups:
            task = RowGroups(url, (rg,), partition, dict(storage_options), tuple(row_filters))
            fragments.append(Fragment(task, int(rows)))
    return fragments


def maybe_corrupt(e: OSError) -> bool:
    """An OSError that may be a bad file (not a missing one, not the network's)."""
    from ..remote_errors import classify_remote_error

    return (not isinstance(e, (FileNotFoundError, PermissionError))
            and classify_remote_error(e) is None)


def corrupt_file(path: str, storage_options: dict | None = None) -> tuple[str, str] | None:
    """The first file under ``path`` whose Parquet footer cannot be read, and why."""
    import fsspec
    import pyarrow.parquet as pq

    try:
        fs, root = fsspec.core.url_to_fs(path, **(storage_options or {}))
        files = [root] if fs.isfile(root) else sorted(fs.find(root))
    except OSError:
        return None
    for name in files:
        if posixpath.basename(name).startswith(("_", ".")):
            continue  # _SUCCESS, _metadata, hidden files: not data (dask skips them too)
        try:
            with fs.open(name, "rb") as fh:
                pq.read_metadata(fh)
        except (pa.ArrowException, OSError) as e:
            if not isinstance(e, pa.ArrowException) and not maybe_corrupt(e):
                return None  # unreachable, not corrupt: say nothing about the file
            shown = fs.unstrip_protocol(name) if "://" in path else name
            return shown, " ".join(str(e).split())[:160]
    return None
