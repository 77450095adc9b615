"""What the table sources (Parquet, Delta Lake, Iceberg) share: a snapshot's data files
(or row groups), planned into row chunks, read by the workers into one row-aligned frame
and float array.

A format decides *which* fragments (files, row groups, and which rows of them) make up
the data; this module turns that list into a :class:`Dataset`. Each partition holds
about ``chunk_bytes`` of features: small consecutive fragments are read together by one
task, and a fragment worth several partitions is read once and cut (:func:`plan_reads`).
Row counts are known from the format's metadata when no row filter is left to apply
after the fragment selection, so the array's chunks are known without a pass.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from functools import partial

import numpy as np
import pandas as pd
import pyarrow as pa

from ...parallel.inputs import check_columns, fixed_partitions
from .base import Dataset, chunk_rows


def dedupe(names) -> list[str]:
    return list(dict.fromkeys(n for n in names if n))


def float_features(part, features):
    return part[features].astype(np.float64)


@dataclass(frozen=True)
class Fragment:
    """One data file of a snapshot (or whatever unit the format reads at once).

    ``rows`` is its live row count before any row filter, when the metadata knows it
    (None otherwise); ``task`` is whatever the format's reader needs, and must pickle.
    """

    task: object
    rows: int | None

    def __dask_tokenize__(self) -> tuple:
        return fields_token(self)


def fields_token(obj) -> tuple:
    """A dataclass's dask token (its ``__dask_tokenize__``): class name and field values.

    Dask's own normalisation of a dataclass pickles the class for every instance: 0.3 of
    the 0.56 s ``load()`` of 2,000 small Parquet files went to tokenizing their tasks.
    Dask hashes the returned tuple by its ``str``, so only values whose ``repr`` is
    exact (strings, numbers, tuples of them, and string-keyed dicts of them in sorted
    order) are returned as they are; anything else (a long array's repr is shortened,
    objects print their id) goes through dask's normalizers.
    """
    from dask.tokenize import normalize_token

    def token(v):
        if _exact_repr(v):
            return v
        if type(v) is dict and all(type(k) is str and _exact_repr(x) for k, x in v.items()):
            return "dict", tuple(sorted(v.items()))  # storage options: any key order
        return normalize_token(v)

    return (type(obj).__qualname__, *(token(getattr(obj, f.name)) for f in fields(obj)))


_EXACT = (str, bytes, int, float, bool, type(None))


def _exact_repr(v) -> bool:
    return type(v) in _EXACT or (type(v) is tuple and all(_exact_repr(x) for x in v))


def pick_columns(where: str, available: Sequence[str], columns, id_column, passthrough):
    """The feature columns (all but id and passthrough by default), checked to exist."""
    extra = dedupe([id_column, *passthrough])
    wanted = list(columns) if columns else [c for c in available if c not in extra]
    missing = [c for c in dedupe(wanted + extra) if c not in available]
    if missing:
        raise ValueError(f"Column(s) {missing} not in {where}; it has {list(available)}: "
                         "fix the column names.")
    if not wanted:
        raise ValueError(f"{where} has no feature columns left: name them with --columns.")
    return wanted


def plan_reads(fragments: Sequence[Fragment], row_bytes: int,
               chunk_bytes: int) -> list[tuple[tuple[Fragment, ...], int]]:
    """``(group, parts)`` pairs: one task reads a group of consecutive fragments, and its
    rows are cut into ``parts`` partitions.

    A partition holds about the rows :func:`~.base.chunk_rows` picks from the byte budget
    (so small data still gets ``MIN_CHUNKS`` partitions): small fragments are grouped,
    and a fragment worth several partitions is read once and cut, not re-read per piece.
    A fragment of unknown size counts as one partition's worth.
    """
    known = all(f.rows is not None for f in fragments)
    total = sum(f.rows for f in fragments) if known else None
    target = chunk_rows(1, row_bytes, chunk_bytes, n_rows=total)
    plan, group, size = [], [], 0
    for frag in fragments:
        rows = target if frag.rows is None else frag.rows
        parts = max(1, round(rows / target))
        if group and (parts > 1 or size + rows > target):
            plan.append((tuple(group), 1))
            group, size = [], 0
        if parts > 1:
            plan.append(((frag,), parts))
        else:
            group.append(frag)
            size += rows
    if group:
        plan.append((tuple(group), 1))
    return plan


def _cut(rows: int, part: int, parts: int) -> slice:
    return slice(part * rows // parts, (part + 1) * rows // parts)


class GroupReader:
    """Reads a group of fragments into one pandas frame (pyarrow-backed columns).

    ``read(tasks, columns) -> list of pyarrow.Table`` is the format's reader (given the
    tasks of a group's fragments, so it can merge reads of one file); it and everything
    it closes over travel to the workers.
    """

    def __init__(self, read: Callable, columns: list[str], schema: pa.Schema,
                 where: str = "", exact: bool = False):
        self.read, self.columns, self.schema = read, columns, schema
        self.where, self.exact = where, exact  # exact: the fragments' rows are the chunks'

    def table(self, group: tuple[Fragment, ...]) -> pa.Table:
        tables = self.read([frag.task for frag in group], self.columns)
        if not tables:
            table = self.schema.empty_table()
        else:
            try:  # files written alike (the usual case) are conformed once, not one by one
                table = pa.concat_tables(tables)
            except pa.ArrowInvalid:  # their schemas differ (metadata aside)
                table = pa.concat_tables([_conform(t, self.columns, self.schema)
                                          for t in tables])
            else:
                table = _conform(table, self.columns, self.schema)
        expected = sum(f.rows for f in group) if self.exact else table.num_rows
        if table.num_rows != expected:  # else X's chunks would silently misalign
            raise ValueError(f"{self.where} changed while it was read ({expected} rows "
                             f"planned in a chunk, {table.num_rows} read): rerun the job.")
        return table

    def part(self, table: pa.Table, part: int, parts: int) -> pd.DataFrame:
        cut = _cut(table.num_rows, part, parts)
        piece = table.slice(cut.start, cut.stop - cut.start)
        return piece.to_pandas(types_mapper=pd.ArrowDtype)

    def __call__(self, group: tuple[Fragment, ...]) -> pd.DataFrame:
        return self.part(self.table(group), 0, 1)


def _conform(table: pa.Table, columns: list[str], schema: pa.Schema) -> pa.Table:
    """``table``'s ``columns`` with ``schema``'s types (a cast only where they differ:
    it costs about as much as reading a small file's column)."""
    table = table.select(columns)
    if table.schema.equals(schema):  # the same types: only the metadata (pandas') goes
        return pa.Table.from_arrays(table.columns, schema=schema)
    return table.cast(schema)


def one_by_one(read_one: Callable) -> Callable:
    """A group reader from a reader of one fragment's task."""
    return partial(_each, read_one)


def _each(read_one: Callable, tasks: list, columns: list[str]) -> list[pa.Table]:
    return [read_one(task, columns) for task in tasks]


def table_dataset(*, where: str, fragments: Sequence[Fragment], read: Callable,
                  schema: pa.Schema, features: list[str], id_column, passthrough,
                  chunk_bytes: int, lengths_known: bool, description: dict,
                  no_rows: str | None = None) -> Dataset:
    """The :class:`Dataset` of a snapshot's fragments (see the module docstring).

    ``read(tasks, columns)`` reads a group of fragments (see :class:`GroupReader`);
    ``schema`` holds the arrow types of the columns read (features, id, passthrough);
    ``description`` is completed with the columns, shape and chunks; ``no_rows`` is the
    error for an empty selection.
    """
    import dask.dataframe as dd
    from dask.tokenize import tokenize

    no_rows = no_rows or f"No rows in {where}: check the table, its version and the filters."
    if not fragments:
        raise ValueError(no_rows)
    columns = dedupe(features + [id_column, *passthrough])
    schema = pa.schema([schema.field(c) for c in columns])
    check_columns(features, [pd.ArrowDtype(schema.field(c).type) for c in features])
    plan = plan_reads(fragments, 8 * len(features), chunk_bytes)
    reader = GroupReader(read, columns, schema, where, lengths_known)
    meta = schema.empty_table().to_pandas(types_mapper=pd.ArrowDtype)
    token = tokenize(where, columns, chunk_bytes, [[f.task for f in g] for g, _ in plan])
    read_name, part_name = f"read-table-{token}", f"table-part-{token}"
    layer, keys = {}, []
    for g, (group, n) in enumerate(plan):
        if n == 1:
            layer[(part_name, len(keys))] = (partial(reader, group),)
            keys.append((part_name, len(keys)))
            continue
        layer[(read_name, g)] = (partial(reader.table, group),)
        for i in range(n):  # one read, cut into n partitions
            layer[(part_name, len(keys))] = (reader.part, (read_name, g), i, n)
            keys.append((part_name, len(keys)))
    # from_graph (in dask.dataframe's __all__): from_map cannot share one read between
    # partitions, and from_delayed's frames fail in to_dask_array (dask 2026.8)
    df = dd.from_graph(layer, meta, (None,) * (len(keys) + 1), keys, "table")
    # one fixed partitioning shared by X and the frame (see fixed_partitions)
    df = fixed_partitions(df)
    numeric = df.map_partitions(float_features, features,
                                meta=pd.DataFrame({c: [] for c in features}, dtype=float))
    lengths = True
    if lengths_known:
        lengths = []
        for group, n in plan:
            rows = sum(f.rows for f in group)
            lengths.extend(len(range(rows)[_cut(rows, i, n)]) for i in range(n))
    X = numeric.to_dask_array(lengths=lengths)
    if X.shape[0] == 0:
        raise ValueError(no_rows)
    desc = {**description, "columns": features, "id_column": id_column,
            "shape": list(X.shape), "chunks": [int(c) for c in X.chunks[0]]}
    return Dataset(X, tuple(features), df, id_column, tuple(passthrough), desc)


def keep_rows(table: pa.Table, keep: np.ndarray | None) -> pa.Table:
    """``table`` without the rows a deletion mask drops (``keep`` True = live)."""
    if keep is None:
        return table
    keep = np.asarray(keep, dtype=bool)[:table.num_rows]
    if keep.size < table.num_rows:  # a selection vector may stop at its last deletion
        keep = np.concatenate([keep, np.ones(table.num_rows - keep.size, dtype=bool)])
    return table.filter(pa.array(keep))
