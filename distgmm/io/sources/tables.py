"""What the table sources (Delta Lake, Iceberg) share: a snapshot's data files, grouped
into row chunks, read by the workers into one row-aligned frame and float array.

A table format decides *which* files (and which rows of them) make up a snapshot; this
module turns that list into the same :class:`Dataset` the Parquet source yields. Each
partition of the frame is one group of consecutive files (about ``chunk_bytes`` of
features); its row count is known from the table's metadata when no row filter is left
to apply after the file selection, so the array's chunks are known without a pass.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from ...parallel.inputs import check_columns, fixed_partitions
from .base import Dataset
from .parquet import _dedupe, _float_features, _plain, parse_filter


@dataclass(frozen=True)
class Fragment:
    """One data file of a snapshot (or whatever unit the format reads at once).

    ``rows`` is its live row count when the table's metadata knows it (None otherwise);
    ``task`` is whatever the format's reader needs, and must pickle.
    """

    task: object
    rows: int | None


def pick_columns(where: str, available: Sequence[str], columns, id_column, passthrough):
    """The feature columns (all but id and passthrough by default), checked to exist."""
    extra = _dedupe([id_column, *passthrough])
    wanted = list(columns) if columns else [c for c in available if c not in extra]
    missing = [c for c in _dedupe(wanted + extra) if c not in available]
    if missing:
        raise ValueError(f"Column(s) {missing} not in {where}; it has {list(available)}: "
                         "fix the column names.")
    if not wanted:
        raise ValueError(f"{where} has no feature columns left: name them with --columns.")
    return wanted


def check_filter_columns(where: str, filters, available: Sequence[str]) -> list[tuple]:
    """The parsed filters, each on a column the table has."""
    parsed = [parse_filter(f) for f in filters]
    unknown = sorted({c for c, _, _ in parsed if c not in available})
    if unknown:
        raise ValueError(f"Filter column(s) {unknown} not in {where}; it has "
                         f"{list(available)}: fix the filters.")
    return parsed


def plain_filters(parsed) -> list:
    """Filters as JSON holds them (for descriptions and fingerprints)."""
    return [[c, op, _plain(v)] for c, op, v in parsed]


def group_fragments(fragments: Sequence[Fragment], row_bytes: int,
                    chunk_bytes: int) -> list[list[Fragment]]:
    """Consecutive fragments grouped to about ``chunk_bytes`` each (a file is never split)."""
    groups, current, size = [], [], 0
    for frag in fragments:
        est = (frag.rows if frag.rows is not None else 1) * row_bytes
        if current and size + est > chunk_bytes:
            groups.append(current)
            current, size = [], 0
        current.append(frag)
        size += est
    if current:
        groups.append(current)
    return groups


class GroupReader:
    """Reads a group of fragments into one pandas frame (pyarrow-backed columns).

    ``read_one(task, columns) -> pyarrow.Table`` is the format's reader; it and
    everything it closes over travel to the workers.
    """

    def __init__(self, read_one: Callable, columns: list[str], schema: pa.Schema):
        self.read_one, self.columns, self.schema = read_one, columns, schema

    def __call__(self, group: list[Fragment]) -> pd.DataFrame:
        tables = [self.read_one(frag.task, self.columns) for frag in group]
        tables = [t.select(self.columns).cast(self.schema) for t in tables]
        table = pa.concat_tables(tables) if tables else self.schema.empty_table()
        return table.to_pandas(types_mapper=pd.ArrowDtype)


def table_dataset(*, where: str, fragments: Sequence[Fragment], read_one: Callable,
                  schema: pa.Schema, features: list[str], id_column, passthrough,
                  chunk_bytes: int, lengths_known: bool, description: dict) -> Dataset:
    """The :class:`Dataset` of a snapshot's fragments (see the module docstring).

    ``schema`` holds the arrow types of the columns read (features, id, passthrough);
    ``description`` is completed with the columns, shape and chunks.
    """
    import dask.dataframe as dd

    if not fragments:
        raise ValueError(f"No rows in {where}: check the table, its version and the filters.")
    columns = _dedupe(features + [id_column, *passthrough])
    schema = pa.schema([schema.field(c) for c in columns])
    check_columns(features, [pd.ArrowDtype(schema.field(c).type) for c in features])
    groups = group_fragments(fragments, 8 * len(features), chunk_bytes)
    reader = GroupReader(read_one, columns, schema)
    meta = schema.empty_table().to_pandas(types_mapper=pd.ArrowDtype)
    df = dd.from_map(reader, groups, meta=meta, enforce_metadata=False)
    # as in the Parquet source: one fixed partitioning shared by X and the frame
    df = fixed_partitions(df)
    numeric = df.map_partitions(_float_features, features,
                                meta=pd.DataFrame({c: [] for c in features}, dtype=float))
    lengths = ([sum(f.rows for f in g) for g in groups] if lengths_known else True)
    X = numeric.to_dask_array(lengths=lengths)
    if X.shape[0] == 0:
        raise ValueError(f"No rows in {where}: check the table, its version and the filters.")
    desc = {**description, "columns": features, "id_column": id_column,
            "shape": list(X.shape), "chunks": [int(c) for c in X.chunks[0]]}
    return Dataset(X, tuple(features), df, id_column, tuple(passthrough), desc)


def arrow_filter(parsed):
    """The parsed filters ANDed as a pyarrow compute expression (None for none)."""
    if not parsed:
        return None
    import pyarrow.parquet as pq

    return pq.filters_to_expression([tuple(f) for f in parsed])


def keep_rows(table: pa.Table, keep: np.ndarray | None) -> pa.Table:
    """``table`` without the rows a deletion mask drops (``keep`` True = live)."""
    if keep is None:
        return table
    keep = np.asarray(keep, dtype=bool)[:table.num_rows]
    if keep.size < table.num_rows:  # a selection vector may stop at its last deletion
        keep = np.concatenate([keep, np.ones(table.num_rows - keep.size, dtype=bool)])
    return table.filter(pa.array(keep))
