"""Parquet: one file, a directory of files, or a hive-partitioned dataset.

The files' footers are read on the client (:mod:`.parquet_files`); the row groups they
list are planned into partitions of about ``chunk_bytes`` like a table's files
(:mod:`.tables`): many small files or row groups make one task, a huge row group is read
once and cut into several partitions.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import pandas as pd
import pyarrow as pa

from .base import DEFAULT_CHUNK_BYTES, Dataset
from .filters import check_filter_columns, parse_filter, plain_filters, typed_filter
from .parquet_files import (
    RowGroupReader,
    corrupt_file,
    data_columns,
    list_files,
    maybe_corrupt,
    open_dataset,
    row_group_fragments,
    unified_schema,
)
from .tables import pick_columns, table_dataset


@dataclass(frozen=True)
class ParquetSource:
    """Rows of a Parquet dataset, feature columns converted to float64.

    Parameters
    ----------
    path : str
        A file, a directory, or a hive-partitioned dataset (local or fsspec URL).
    columns : tuple of str, optional
        Feature columns; default all columns except ``id_column`` and ``passthrough``.
    filters : tuple
        Row filters ANDed together, each ``"col OP value"`` or ``(col, op, value)``;
        partition columns filter whole files.
    id_column : str, optional
        Carried to tabular outputs so labels can be joined back.
    passthrough : tuple of str
        More columns copied to tabular outputs.
    storage_options : dict
    chunk_bytes : int
        Target bytes of features per partition: small files and row groups are read
        together; a row group worth several partitions is read once and cut.
    """

    path: str
    columns: tuple[str, ...] | None = None
    filters: tuple = ()
    id_column: str | None = None
    passthrough: tuple[str, ...] = ()
    storage_options: dict = field(default_factory=dict)
    chunk_bytes: int = DEFAULT_CHUNK_BYTES

    def _unreadable(self, e: Exception) -> ValueError:
        bad = corrupt_file(self.path, self.storage_options)
        if bad is not None:
            return ValueError(f"{bad[0]} in {self.path} is not a readable Parquet file "
                              f"({bad[1]}): remove or rewrite that file.")
        where = f" with the filters {list(self.filters)}" if self.filters else ""
        return ValueError(
            f"Cannot read {self.path}{where} ({' '.join(str(e).split())[:200]}): check "
            "that it is Parquet and that filter values have the column's type."
        )

    def load(self) -> Dataset:
        try:
            fs, root, files = list_files(self.path, self.storage_options)
        except FileNotFoundError:
            files = []
        if not files:
            raise FileNotFoundError(
                f"No Parquet file or dataset at {self.path}: check the input path.")
        try:
            dataset = open_dataset(fs, root, list(files))
            dtypes = {f.name: pd.ArrowDtype(f.type) for f in dataset.schema}
            parsed = [typed_filter(f, dtypes) for f in
                      check_filter_columns(self.path, self.filters, data_columns(dataset.schema))]
            fragments, schemas = row_group_fragments(dataset, fs, files, parsed,
                                                     self.storage_options)
        except (pa.ArrowException, OSError) as e:
            if isinstance(e, pa.ArrowException) or maybe_corrupt(e):
                raise self._unreadable(e) from None
            raise
        schema = unified_schema(self.path, schemas, dataset)
        features = pick_columns(self.path, data_columns(schema), self.columns,
                                self.id_column, self.passthrough)
        where = f" after the filters {list(self.filters)}" if self.filters else ""
        # the files' sizes and times: a checkpoint of other contents is not resumed
        stamp = hashlib.sha256("\n".join(f"{n} {v}" for n, v in files.items()).encode())
        desc = {"kind": "parquet", "path": self.path, "files": len(files),
                "files_version": stamp.hexdigest()[:16], "row_groups": len(fragments),
                "filters": plain_filters(parse_filter(f) for f in self.filters)}
        try:
            return table_dataset(
                where=self.path, fragments=fragments, read=RowGroupReader(schema),
                schema=schema, features=features, id_column=self.id_column,
                passthrough=self.passthrough, chunk_bytes=self.chunk_bytes,
                lengths_known=not any(f.task.filters for f in fragments), description=desc,
                no_rows=f"No rows in {self.path}{where}: check the path and the filter "
                        "values.")
        except pa.ArrowException as e:  # counting rows after a row filter reads the data
            raise self._unreadable(e) from None
