"""Parquet: one file, a directory of files, or a hive-partitioned dataset."""

from __future__ import annotations

import ast
import os
import posixpath
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa

from ...parallel.inputs import check_columns, fixed_partitions
from .base import DEFAULT_CHUNK_BYTES, Dataset

_OPS = ("==", "!=", "<=", ">=", "<", ">", "not in", "in")
_FILTER = re.compile(r"^\s*([A-Za-z_][\w.\-]*)\s*(==|!=|<=|>=|<|>|=|not\s+in|in)\s*(.+?)\s*$")


def parse_filter(expr) -> tuple:
    """``"col OP value"`` (or a ``[col, op, value]`` triple) as a pyarrow filter tuple.

    ``value`` is a Python literal (``3``, ``2.5``, ``'2026-11-01'``, ``[1, 2]``); a bare
    word is taken as a string. ``=`` means ``==``.

    Examples
    --------
    >>> parse_filter("date == '2026-11-01'")
    ('date', '==', '2026-11-01')
    >>> parse_filter("x > 3")
    ('x', '>', 3)
    """
    if isinstance(expr, (list, tuple)):
        if len(expr) != 3 or expr[1] not in _OPS:
            raise ValueError(
                f"Filter {list(expr)!r} is not [column, op, value] with op one of {_OPS}."
            )
        return tuple(expr)
    m = _FILTER.match(str(expr))
    if not m:
        raise ValueError(
            f"Cannot read the filter {expr!r}: write it as 'COLUMN OP VALUE', e.g. "
            "\"date == '2026-11-01'\" or 'x > 3', with OP one of " + ", ".join(_OPS) + "."
        )
    col, op, raw = m.groups()
    op = "==" if op == "=" else re.sub(r"\s+", " ", op)
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw
    if op in ("in", "not in") and not isinstance(value, (list, tuple, set)):
        raise ValueError(f"Filter {expr!r}: '{op}' needs a list, e.g. \"{col} {op} [1, 2]\".")
    return (col, op, list(value) if op in ("in", "not in") else value)


def _float_features(part, features):
    return part[features].astype(np.float64)


def _plain(value):
    """A filter value as JSON can hold it (dates as ISO strings)."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value if isinstance(value, (str, int, float, bool, type(None))) else str(value)


def _dedupe(names) -> list[str]:
    return list(dict.fromkeys(n for n in names if n))


def _typed(filt: tuple, dtypes: dict | None) -> tuple:
    """A filter whose text values are compared with a timestamp or date column: ISO
    literals (``ts < '2026-01-01 05:00:00'``) become timestamps of the column's zone."""
    col, op, value = filt
    dtype = (dtypes or {}).get(col)
    if dtype is None or not _is_temporal(dtype):
        return filt
    tz = getattr(dtype, "tz", None) or getattr(getattr(dtype, "pyarrow_dtype", None),
                                               "tz", None)

    def convert(v):
        if not isinstance(v, str):
            return v
        try:
            ts = pd.Timestamp(v)
        except ValueError:
            raise ValueError(f"Filter {col} {op} {v!r}: {col} holds timestamps; write the "
                             "value as an ISO date or time, e.g. '2026-01-01 05:00:00'.") from None
        if tz is not None and ts.tzinfo is None:
            ts = ts.tz_localize(tz)
        if str(dtype).startswith("date32"):
            return ts.date()
        return ts

    return (col, op, [convert(v) for v in value] if isinstance(value, list) else convert(value))


def _is_temporal(dtype) -> bool:
    text = str(dtype)
    return text.startswith(("datetime64", "timestamp", "date32", "date64"))


def _maybe_corrupt(e: OSError) -> bool:
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
            if not isinstance(e, pa.ArrowException) and not _maybe_corrupt(e):
                return None  # unreachable, not corrupt: say nothing about the file
            shown = fs.unstrip_protocol(name) if "://" in path else name
            return shown, " ".join(str(e).split())[:160]
    return None


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
        Target bytes per partition (Parquet row groups are never split).
    """

    path: str
    columns: tuple[str, ...] | None = None
    filters: tuple = ()
    id_column: str | None = None
    passthrough: tuple[str, ...] = ()
    storage_options: dict = field(default_factory=dict)
    chunk_bytes: int = DEFAULT_CHUNK_BYTES

    def _read(self, columns=None, dtypes=None):
        import dask.dataframe as dd

        filters = [_typed(parse_filter(f), dtypes) for f in self.filters] or None
        path = self.path if "://" in self.path else os.path.abspath(self.path)
        try:
            return dd.read_parquet(
                path, columns=columns, filters=filters, index=False,
                storage_options=self.storage_options or None, blocksize=self.chunk_bytes,
            )
        except FileNotFoundError:
            raise FileNotFoundError(
                f"No Parquet file or dataset at {self.path}: check the input path."
            ) from None
        except pa.ArrowException as e:
            raise self._unreadable(e) from None

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

    def _features(self, available: list[str]) -> list[str]:
        extra = _dedupe([self.id_column, *self.passthrough])
        wanted = list(self.columns) if self.columns else [c for c in available if c not in extra]
        missing = [c for c in _dedupe(wanted + extra) if c not in available]
        if missing:
            raise ValueError(
                f"Column(s) {missing} not in {self.path}; it has {available}: fix the "
                "column names."
            )
        if not wanted:
            raise ValueError(f"{self.path} has no feature columns left: name them with --columns.")
        return wanted

    def _read_schema(self):
        """The dataset's columns and types (metadata only; filters are typed by it)."""
        unfiltered = ParquetSource(self.path, storage_options=self.storage_options,
                                   chunk_bytes=self.chunk_bytes)
        return unfiltered._read()

    def load(self) -> Dataset:
        schema = self._read_schema()
        features = self._features(list(schema.columns))
        df = self._read(_dedupe(features + [self.id_column, *self.passthrough]),
                        dtypes=dict(schema.dtypes))
        check_columns(features, [df.dtypes[c] for c in features])
        # X (features only) and the frame the outputs are computed from (ids too) must
        # share one partitioning (see fixed_partitions)
        df = fixed_partitions(df)
        numeric = df.map_partitions(_float_features, features,
                                    meta=pd.DataFrame({c: [] for c in features}, dtype=float))
        try:
            X = numeric.to_dask_array(lengths=True)
        except (pa.ArrowException, OSError) as e:
            # a file whose footer reads but whose pages do not fails here, on a worker
            if isinstance(e, pa.ArrowException) or _maybe_corrupt(e):
                raise self._unreadable(e) from None
            raise
        if X.shape[0] == 0:
            where = f" after the filters {list(self.filters)}" if self.filters else ""
            raise ValueError(
                f"No rows in {self.path}{where}: check the path and the filter values."
            )
        desc = {
            "kind": "parquet", "path": self.path, "columns": features,
            "filters": [[c, op, _plain(v)] for c, op, v in map(parse_filter, self.filters)],
            "id_column": self.id_column, "shape": list(X.shape), "chunks": list(X.chunks[0]),
        }
        return Dataset(X, tuple(features), df, self.id_column, tuple(self.passthrough), desc)
