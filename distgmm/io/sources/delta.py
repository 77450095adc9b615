"""Delta Lake tables: the data files of one snapshot, never the files it removed.

The snapshot (latest, ``version=`` or ``as_of=``) is resolved once, on the client, with
the ``deltalake`` package; its add actions say which files are live, their partition
values and row counts. Filters on partition columns select files (nothing else is
read); filters on other columns prune files by their min/max statistics and then
filter rows as they are read (allowed, just slower: rows counts are then only known
after a pass). Deletion vectors are honoured: each file's keep mask, as the table's own
reader (delta-kernel) materialises it, travels with the file's task.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass, field
from datetime import UTC

import numpy as np

from .base import DEFAULT_CHUNK_BYTES, Dataset
from .filters import arrow_filter, check_filter_columns, plain_filters
from .parquet_files import open_parquet
from .tables import Fragment, fields_token, keep_rows, one_by_one, pick_columns, table_dataset


def _deltalake():
    try:
        import deltalake
    except ImportError as e:  # an optional extra
        raise ImportError("Delta Lake input needs the deltalake package: pip install "
                          "'distgmm[lake]'.", name=e.name) from None
    return deltalake


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split())[:200]


def open_delta_table(path: str, version: int | None = None, as_of: str | None = None,
                     storage_options: dict | None = None):
    """The ``deltalake.DeltaTable`` at a version (or timestamp), errors as ValueError."""
    deltalake = _deltalake()
    from deltalake.exceptions import DeltaError, TableNotFoundError

    if version is not None and as_of is not None:
        raise ValueError(f"{path}: give either version or as_of, not both.")
    if isinstance(version, str):
        if not version.strip().isdigit():
            raise ValueError(f"version={version!r}: a Delta table version is a whole "
                             "number, e.g. 0.")
        version = int(version)
    uri = path if "://" in path else os.path.abspath(path)
    try:
        dt = deltalake.DeltaTable(uri, version=version,
                                  storage_options=storage_options or None)
    except TableNotFoundError:
        raise FileNotFoundError(f"No Delta table at {path} (no _delta_log): check the "
                                "input path.") from None
    except DeltaError as e:
        if version is not None:
            latest = deltalake.DeltaTable(uri, storage_options=storage_options or None)
            raise ValueError(f"{path} has no version {version} (versions 0..."
                             f"{latest.version()} may exist, older ones may have been "
                             "cleaned up): pick an existing version.") from None
        raise ValueError(f"Cannot read the Delta table {path} ({_one_line(e)}).") from None
    if as_of is not None:
        _load_as_of(dt, path, as_of)
    return dt


def _load_as_of(dt, path: str, as_of: str) -> None:
    from datetime import datetime

    try:
        when = datetime.fromisoformat(str(as_of).replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"as_of={as_of!r} is not an ISO timestamp: write e.g. "
                         "2026-11-21T00:00:00Z.") from None
    first = min(h["timestamp"] for h in dt.history())
    if when.tzinfo is None:

        when = when.replace(tzinfo=UTC)
    if when.timestamp() * 1000 < first:
        raise ValueError(f"{path} did not exist at {as_of} (its first commit is at "
                         f"{datetime.fromtimestamp(first / 1000).isoformat()}): pick a "
                         "later as_of.")
    dt.load_as_version(when)


def _refuse_unsupported(dt, path: str) -> None:
    mode = dt.metadata().configuration.get("delta.columnMapping.mode", "none")
    if mode != "none":
        raise ValueError(f"{path} uses Delta column mapping ({mode!r}), which distgmm "
                         "does not read: rewrite the table without column mapping.")


def _keep_masks(dt) -> dict:
    """File name -> packed keep mask, for files with deletion vectors."""
    masks = {}
    for batch in dt.deletion_vectors():
        rows = batch.to_pylist() if hasattr(batch, "to_pylist") else _rows(batch)
        for row in rows:
            keep = np.asarray(row["selection_vector"], dtype=bool)
            masks[posixpath.basename(row["filepath"])] = (np.packbits(keep), keep.size)
    return masks


def _rows(batch):
    import pyarrow as pa

    return pa.record_batch(batch).to_pylist()


def _actions(dt) -> list[dict]:
    import pyarrow as pa

    rows = pa.table(dt.get_add_actions(flatten=True)).to_pylist()
    return sorted(rows, key=lambda r: (
        tuple(str(v) for k, v in sorted(r.items()) if k.startswith("partition.")),
        r["modification_time"], r["path"]))


@dataclass(frozen=True)
class DeltaFile:
    """What a worker needs to read one live file of the snapshot."""

    uri: str
    partition: dict
    keep: tuple | None  # (packed bits, length) of a deletion vector's keep mask
    storage_options: dict
    filters: tuple
    size: int | None = None  # bytes, from the add action

    def __dask_tokenize__(self) -> tuple:
        return fields_token(self)

    def read(self, columns: list[str]):
        import pyarrow as pa

        with open_parquet(self.uri, self.storage_options, self.size) as pf:
            stored = pf.schema_arrow.names  # one footer read, not one for the schema too
            table = pf.read(columns=[c for c in columns if c in stored], use_threads=False)
        if self.keep is not None:
            packed, n = self.keep
            table = keep_rows(table, np.unpackbits(packed, count=n).astype(bool))
        for name, value in self.partition.items():
            if name in columns and name not in stored:
                table = table.append_column(name, pa.array([value] * table.num_rows))
        present = set(table.column_names)
        for name in columns:  # columns added to the table after this file was written
            if name not in present:
                table = table.append_column(name, pa.nulls(table.num_rows))
        expr = arrow_filter(self.filters)
        return table if expr is None else table.filter(expr)


def _read_delta_file(task: DeltaFile, columns: list[str]):
    return task.read(columns)


@dataclass(frozen=True)
class DeltaSource:
    """The rows of one snapshot of a Delta Lake table, feature columns as float64.

    Parameters
    ----------
    path : str
        The table's root (holding ``_delta_log/``), local or a URL.
    version : int, optional
        Read this version (time travel); default the latest.
    as_of : str, optional
        Read the version current at this ISO timestamp.
    columns, filters, id_column, passthrough, storage_options, chunk_bytes
        As for :class:`~distgmm.io.sources.ParquetSource`; filters on partition
        columns select files, others filter rows after min/max pruning.
    """

    path: str
    version: int | str | None = None
    as_of: str | None = None
    columns: tuple[str, ...] | None = None
    filters: tuple = ()
    id_column: str | None = None
    passthrough: tuple[str, ...] = ()
    storage_options: dict = field(default_factory=dict)
    chunk_bytes: int = DEFAULT_CHUNK_BYTES

    def load(self) -> Dataset:
        import pyarrow as pa

        dt = open_delta_table(self.path, self.version, self.as_of, self.storage_options)
        _refuse_unsupported(dt, self.path)
        schema = pa.schema(dt.schema().to_arrow())
        where = f"the Delta table {self.path} (version {dt.version()})"
        features = pick_columns(where, schema.names, self.columns, self.id_column,
                                self.passthrough)
        parsed = check_filter_columns(where, self.filters, schema.names)
        parts = set(dt.metadata().partition_columns)
        residual = tuple(f for f in parsed if f[0] not in parts)
        fragments = self._fragments(dt, parsed, residual)
        desc = {"kind": "delta", "path": self.path, "version": dt.version(),
                "as_of": self.as_of, "files": len(fragments),
                "filters": plain_filters(parsed),
                "row_filters": plain_filters(residual)}
        return table_dataset(
            where=where, fragments=fragments, read=one_by_one(_read_delta_file), schema=schema,
            features=features, id_column=self.id_column, passthrough=self.passthrough,
            chunk_bytes=self.chunk_bytes, description=desc,
            lengths_known=not residual and all(f.rows is not None for f in fragments))

    def _fragments(self, dt, parsed: list, residual: tuple) -> list[Fragment]:
        pruning = [(c, "=" if op == "==" else op, v) for c, op, v in parsed]
        try:
            live = dt.file_uris(file_pruning_predicate=pruning or None)
        except Exception as e:  # deltalake reports bad filter values as its own errors
            raise ValueError(f"Cannot apply the filters {plain_filters(parsed)} to "
                             f"{self.path} ({_one_line(e)}): check that filter values "
                             "have the column's type.") from None
        uris = {posixpath.basename(u): u for u in live}
        masks = _keep_masks(dt)
        fragments = []
        for act in _actions(dt):
            name = posixpath.basename(act["path"])
            if name not in uris:
                continue
            keep = masks.get(name)
            rows = act.get("num_records")
            if rows is not None and keep is not None:
                rows -= int((~np.unpackbits(keep[0], count=keep[1]).astype(bool)).sum())
            partition = {k.removeprefix("partition."): v for k, v in act.items()
                         if k.startswith("partition.")}
            fragments.append(Fragment(DeltaFile(uris[name], partition, keep,
                                                dict(self.storage_options), residual,
                                                act.get("size_bytes")),
                                      rows))
        return fragments
