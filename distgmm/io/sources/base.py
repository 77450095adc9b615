"""The small contract every data source meets: a row-chunked float dask array.

A source is a frozen description (path and options). ``load()`` opens it lazily and
returns a :class:`Dataset`; nothing is read beyond metadata, except where row counts
are only known by reading (Parquet with filters).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

DEFAULT_CHUNK_BYTES = 128 * 2**20
MIN_CHUNKS = 8
MIN_CHUNK_BYTES = 4 * 2**20


@dataclass(frozen=True)
class Dataset:
    """What a source yields.

    Attributes
    ----------
    X : dask.array.Array of shape (n_samples, n_features)
        Float rows, chunked along rows only, every chunk size known.
    feature_names : tuple of str or None
    frame : dask.dataframe.DataFrame or None
        Row-aligned table (one partition per row chunk of ``X``) holding the id and
        passthrough columns, for sources that have them (Parquet).
    id_column : str or None
    passthrough : tuple of str
        Columns of ``frame`` copied to tabular outputs besides the id.
    description : dict
        JSON-safe account of the input (kind, location, shape, chunks, options) for
        metrics and fingerprints.
    grid : distgmm.io.gridded.Grid or None
        For gridded input: where each row lies on the grid (outputs go back there).
    """

    X: Any
    feature_names: tuple[str, ...] | None = None
    frame: Any = None
    id_column: str | None = None
    passthrough: tuple[str, ...] = ()
    description: dict = field(default_factory=dict)
    grid: Any = None

    @property
    def n_samples(self) -> int:
        return int(self.X.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.X.shape[1])


class Source(Protocol):
    """Anything with ``load() -> Dataset``."""

    def load(self) -> Dataset:
        """Open the data lazily."""
        ...


def chunk_rows(n_features: int, itemsize: int, chunk_bytes: int, store_rows: int = 1,
               n_rows: int | None = None) -> int:
    """Rows per chunk: about ``chunk_bytes`` of data, a whole number of store chunks.

    Data smaller than ``MIN_CHUNKS`` budget-sized chunks is still split into about
    ``MIN_CHUNKS`` chunks (none under ``MIN_CHUNK_BYTES``), so every worker gets work.

    Parameters
    ----------
    n_features : int
    itemsize : int
        Bytes per value as stored.
    chunk_bytes : int
        Target bytes per chunk.
    store_rows : int
        Rows per chunk of the underlying store; chunks never split one.
    n_rows : int, optional
        Rows in the data.
    """
    row_bytes = max(1, n_features * itemsize)
    rows = max(1, int(chunk_bytes) // row_bytes)
    if n_rows:
        small = max(-(-n_rows // MIN_CHUNKS), MIN_CHUNK_BYTES // row_bytes, 1)
        rows = min(rows, small)
    return max(store_rows, rows // store_rows * store_rows)


def check_numeric_array(dtype: np.dtype, ndim: int, where: str) -> None:
    """Sources hold 2-D real numbers."""
    if ndim != 2:
        raise ValueError(
            f"{where} is {ndim}-D; distgmm needs a 2-D array (rows x features): reshape it "
            "or point at the right array."
        )
    if np.dtype(dtype).kind not in "fiub":
        raise ValueError(
            f"{where} has dtype {dtype}, which is not a real number type: store the "
            "features as integers or floats."
        )


def as_float(X):
    """Integers and booleans become float64; floats keep their precision."""
    return X if X.dtype.kind == "f" else X.astype(np.float64)
