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
from contextlib import contextmanager
from dataclasses import dataclass, replace

import pyarrow as pa

from .filters import arrow_filter
from .tables import Fragment, fields_token

EXTENSIONS = (".parq", ".parquet", ".pq")  # what dask's reader takes from a directory
FOOTER_THREADS = 16
FOOTER_CACHE = 8  # big footers a worker process keeps parsed (local files)
BIG_FOOTER = 256 << 10  # smaller footers parse in well under a millisecond
SMALL_FILE = 4 << 20  # read whole before parsing (see open_parquet)
_FOOTERS: OrderedDict = OrderedDict()
_FOOTER_LOCK = threading.Lock()
# a pandas index without a name is stored as a column of this name: not data
_UNNAMED_INDEX = re.compile(r"^__index_level_\d+__$")


def data_columns(schema: pa.Schema) -> list[str]:
    """The columns a user may select (pandas' unnamed index columns left out)."""
    return [n for n in schema.names if not _UNNAMED_INDEX.match(n)]


def _version(info: dict) -> str:
    """What changes when a file is rewritten: its size and modification time or ETag."""
    stamp = next((info[k] for k in ("mtime", "LastModified", "last_modified", "ETag",
                                    "etag", "updated") if info.get(k) is not None), "")
    return f"{info.get('size')}:{stamp}"


def list_files(path: str, storage_options: dict | None = None):
    """``(filesystem, root, files)``: the data files of a file, a directory tree or a
    glob pattern, each with its version (:func:`_version`).

    Names starting with ``_`` or ``.`` anywhere below the root (``_SUCCESS``,
    ``_delta_log/``, hidden files) are not data; nor are files without a Parquet
    extension in a directory. Files are in natural order (``part-2`` before ``part-10``).
    ``root`` is the directory hive partitions are read below (for a pattern, the part
    before its first wildcard).
    """
    import fsspec
    from dask.utils import natural_sort_key

    fs, root = fsspec.core.url_to_fs(path, **(storage_options or {}))
    root = root.rstrip("/") or root
    if any(c in root for c in "*?["):
        found = fs.glob(root, detail=True)
        parts = root.split("/")
        first = next(i for i, p in enumerate(parts) if any(c in p for c in "*?["))
        root = "/".join(parts[:first]) or "/"
        listed = {n: i for n, i in found.items() if i.get("type") == "file"}
    elif fs.isfile(root):
        return fs, posixpath.dirname(root), {root: _version(fs.info(root))}
    elif fs.isdir(root):
        listed = {n: i for n, i in fs.find(root, detail=True).items()
                  if n.endswith(EXTENSIONS)}
    else:
        raise FileNotFoundError(path)
    files = {}
    for name in sorted(listed, key=natural_sort_key):
        below = posixpath.relpath(name, root).split("/")
        if not any(p.startswith(("_", ".")) for p in below):
            files[name] = _version(listed[name])
    return fs, root, files


def open_dataset(fs, root: str, files: list[str]):
    """The ``pyarrow.dataset`` of ``files``, hive partition fields typed from the paths."""
    import pyarrow.dataset as ds

    return ds.dataset(files, filesystem=fs, format="parquet", partitioning="hive",
                      partition_base_dir=root)


@dataclass(frozen=True)
class RowGroups:
    """What a worker needs to read some row groups of one file."""

    url: str
    version: str  # the file's size and modification time when planned (graph keys)
    row_groups: tuple[int, ...]
    partition: tuple[tuple[str, object], ...]  # hive partition values, from the path
    storage_options: dict
    filters: tuple  # row filters left to apply, parsed and typed

    def __dask_tokenize__(self) -> tuple:
        return fields_token(self)

    def read(self, columns: list[str], schema: pa.Schema) -> pa.Table:
        wanted = list(dict.fromkeys([*columns, *(c for c, _, _ in self.filters)])) \
            if self.filters else columns
        try:
            with open_parquet(self.url, self.storage_options, _planned_size(self.version)) as pf:
                # arrow reads the names a file has and skips the others. A dotted name
                # also selects a nested field ("a.b" of a struct "a"), so only then is
                # the file's arrow schema built (0.01 ms a file) to check the names
                names = wanted
                if any("." in c for c in wanted):
                    stored = set(pf.schema_arrow.names)
                    names = [c for c in wanted if c in stored]
                # arrow's own threads: half the cost of a small file's read without them,
                # and the worker's threads already use the cores
                table = pf.read_row_groups(list(self.row_groups), use_threads=False,
                                           columns=names)
        except (pa.ArrowException, OSError) as e:
            if isinstance(e, OSError) and not isinstance(e, pa.ArrowException):
                if not maybe_corrupt(e):
                    raise  # missing or unreachable: the storage's error says it best
            raise ValueError(
                f"{self.url}: cannot read row groups {_spans(self.row_groups)} "
                f"({type(e).__name__}: {' '.join(str(e).split())[:120]}): the file is "
                "corrupt or incomplete; remove or rewrite it.") from None
        present = set(table.schema.names)  # may hold more: "a.b" also reads struct a
        if not present.issuperset(wanted):  # a partition column, or one this file lacks
            parts = dict(self.partition)
            for name in wanted:
                if name in present:
                    continue
                if name in parts:  # a hive partition column: one value for the whole file
                    table = table.append_column(
                        name, pa.array([parts[name]] * table.num_rows,
                                       schema.field(name).type))
                else:  # a column this file does not have
                    table = table.append_column(name, pa.nulls(table.num_rows,
                                                               schema.field(name).type))
        return table if not self.filters else table.filter(arrow_filter(self.filters))


def _planned_size(version: str) -> int | None:
    """The file's size in bytes when it was listed (see :func:`_version`), if known."""
    head = version.partition(":")[0]
    return int(head) if head.isascii() and head.isdigit() else None


@contextmanager
def open_parquet(url: str, storage_options: dict, size: int | None = None):
    """A ``pq.ParquetFile`` of ``url`` (a local path or an fsspec URL), open while in
    the ``with`` block.

    A file of up to ``SMALL_FILE`` bytes (a local file's size now, a remote one's
    ``size`` as listed) is read whole first: one request to a remote store instead of a
    footer read and then column reads, and from local disk about 30 % cheaper for arrow
    to parse from memory than from its file reader (a 500 x 16 file: 0.29 against 0.41
    ms). Bigger local files go through arrow's own file reader (half the time of
    fsspec's for small reads). Local files' big footers are parsed once per process
    (:func:`_open_local`).
    """
    import pyarrow.parquet as pq

    if "://" not in url or url.startswith("file://"):
        import pyarrow.fs as pafs

        path = url.removeprefix("file://")
        key = _stat_key(path)  # before opening: see _open_local
        if key[1] <= SMALL_FILE:  # the size now, should the file have grown since listing
            with open(path, "rb") as fh:
                yield _open_local(pa.BufferReader(fh.read()), key)
        else:
            with pafs.LocalFileSystem().open_input_file(path) as fh:
                yield _open_local(fh, key)
    else:
        import fsspec

        fs, path = fsspec.core.url_to_fs(url, **storage_options)
        if size is not None and size <= SMALL_FILE:
            yield pq.ParquetFile(pa.BufferReader(fs.cat_file(path)))
        else:
            with fs.open(path, "rb") as fh:
                yield pq.ParquetFile(fh)


def _stat_key(path: str) -> tuple:
    st = os.stat(path)
    return (path, st.st_size, st.st_mtime_ns)  # a rewritten file is another key


def _open_local(fh, key: tuple):
    """``pq.ParquetFile`` of a local file, its footer parsed once per worker process when
    it is big (a file of thousands of row groups, read by several tasks every pass).

    The key (path, size, modification time) is taken before the file is opened, so a
    file replaced in between is parsed under its predecessor's key, which no later
    stat matches; a rewrite of the same size within one tick of the filesystem's clock
    would go unseen (a job's tasks read files nobody rewrites while it runs)."""
    import pyarrow.parquet as pq

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
                merged[-1] = replace(last, row_groups=last.row_groups + task.row_groups)
            else:
                merged.append(task)
        return [task.read(columns, self.schema) for task in merged]


def row_group_fragments(dataset, fs, files: dict, filters: list, storage_options: dict):
    """``(fragments, schemas)``: one fragment per row group the filters may select, in
    file order, and each selected file's own schema (as its footer says).

    Partition filters drop whole files and min/max statistics drop row groups (both
    exactly); each fragment's task keeps, to apply as it reads, every filter on a column
    its file has no partition value for (a data column, or a file outside the
    ``key=value`` directories).
    """
    import pyarrow.dataset as ds

    expr = arrow_filter(filters)
    selected = list(dataset.get_fragments(filter=expr) if expr is not None
                    else dataset.get_fragments())

    def footer(frag):
        pieces = frag.split_by_row_group(filter=expr, schema=dataset.schema) \
            if expr is not None else frag.split_by_row_group()
        return ([(rg.id, rg.num_rows) for piece in pieces for rg in piece.row_groups],
                frag.physical_schema)

    threads = min(FOOTER_THREADS, len(selected)) or 1
    # a few files per thread task: one task per file cost more to submit than a small
    # local footer takes to read (0.09 s of 0.2 s for 2,000 files)
    step = max(1, len(selected) // (4 * threads))
    with ThreadPoolExecutor(threads) as pool:
        per_file = [f for batch in pool.map(lambda i: [footer(f) for f in
                                                       selected[i:i + step]],
                                            range(0, len(selected), step)) for f in batch]
    fragments, schemas = [], []
    for frag, (row_groups, schema) in zip(selected, per_file):
        keys = ds.get_partition_keys(frag.partition_expression)
        partition = tuple(sorted(keys.items()))
        left = tuple(f for f in filters if f[0] not in keys)
        schemas.append(schema)
        for rg, rows in row_groups:
            task = RowGroups(fs.unstrip_protocol(frag.path), files.get(frag.path, ""), (rg,),
                             partition, dict(storage_options), left)
            fragments.append(Fragment(task, int(rows)))
    return fragments, schemas


def unified_schema(where: str, schemas: list[pa.Schema], dataset) -> pa.Schema:
    """One schema for files that disagree on a column's type (an integer column in
    one file, a float one in another: pandas writes a column with NaN as float), with the
    hive partition fields after the files' columns."""
    if not schemas:
        return dataset.schema
    try:
        files = pa.unify_schemas(schemas, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise ValueError(f"The files of {where} disagree on column types "
                         f"({' '.join(str(e).split())[:200]}): rewrite them with one type "
                         "per column.") from None
    extra = [f for f in dataset.schema if f.name not in files.names]
    return pa.schema(list(files) + extra)


def maybe_corrupt(e: OSError) -> bool:
    """An OSError that may be a bad file (not a missing one, not the network's)."""
    from ..remote_errors import classify_remote_error

    return (not isinstance(e, (FileNotFoundError, PermissionError))
            and classify_remote_error(e) is None)


def corrupt_file(path: str, storage_options: dict | None = None) -> tuple[str, str] | None:
    """The first data file under ``path`` whose Parquet footer cannot be read, and why."""
    import pyarrow.parquet as pq

    try:
        fs, _, files = list_files(path, storage_options)
    except OSError:
        return None
    for name in files:
        try:
            with fs.open(name, "rb") as fh:
                pq.read_metadata(fh)
        except (pa.ArrowException, OSError) as e:
            if not isinstance(e, pa.ArrowException) and not maybe_corrupt(e):
                return None  # unreachable, not corrupt: say nothing about the file
            shown = fs.unstrip_protocol(name) if "://" in path else name
            return shown, " ".join(str(e).split())[:160]
    return None
