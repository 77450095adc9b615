"""In-memory arrays and memory-mapped ``.npy`` files."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from .base import DEFAULT_CHUNK_BYTES, Dataset, as_float, check_numeric_array, chunk_rows


def _dask_from(obj, shape, dtype, chunk_bytes: int, given_rows: int | None, name=None):
    import dask.array as da

    rows = given_rows or chunk_rows(shape[1], np.dtype(dtype).itemsize, chunk_bytes,
                                   n_rows=shape[0])
    return da.from_array(obj, chunks=(rows, shape[1]), name=name, asarray=True)


@dataclass(frozen=True)
class ArraySource:
    """An in-memory 2-D array (numpy or anything ``np.asarray`` accepts).

    Parameters
    ----------
    data : array-like of shape (n_samples, n_features)
    chunk_bytes : int
        Target bytes per row chunk.
    chunk_rows : int, optional
        Rows per chunk (overrides ``chunk_bytes``).
    feature_names : tuple of str, optional
    """

    data: object
    chunk_bytes: int = DEFAULT_CHUNK_BYTES
    chunk_rows: int | None = None
    feature_names: tuple[str, ...] | None = None

    def load(self) -> Dataset:
        data = np.asarray(self.data)
        check_numeric_array(data.dtype, data.ndim, "the in-memory array")
        X = _dask_from(data, data.shape, data.dtype, self.chunk_bytes, self.chunk_rows)
        desc = {"kind": "array", "shape": list(data.shape), "dtype": str(data.dtype),
                "chunks": list(X.chunks[0])}
        return Dataset(as_float(X), self.feature_names, description=desc)


class NpyFile:
    """A picklable lazy view of a ``.npy`` file: each chunk task memory-maps the file.

    Only the path travels in the task graph, never the data, so every worker reads
    its own rows from a shared filesystem.
    """

    def __init__(self, path: str):
        self.path = path
        mm = np.load(path, mmap_mode="r", allow_pickle=False)
        self.shape, self.dtype, self.ndim = mm.shape, mm.dtype, mm.ndim

    def __getitem__(self, key):
        return np.asarray(np.load(self.path, mmap_mode="r", allow_pickle=False)[key])

    def __getstate__(self):
        return {"path": self.path, "shape": self.shape, "dtype": self.dtype, "ndim": self.ndim}

    def __setstate__(self, state):
        self.__dict__.update(state)


@dataclass(frozen=True)
class NpySource:
    """A ``.npy`` file on a filesystem every worker can see, read memory-mapped.

    Parameters
    ----------
    path : str
    chunk_bytes : int
    chunk_rows : int, optional
    """

    path: str
    chunk_bytes: int = DEFAULT_CHUNK_BYTES
    chunk_rows: int | None = None

    def load(self) -> Dataset:
        from dask.base import tokenize

        path = os.path.abspath(self.path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"No such .npy file: {self.path}: check the input path.")
        try:
            view = NpyFile(path)
        except (ValueError, EOFError, OSError) as e:
            raise ValueError(
                f"{self.path} is not a plain .npy array ({e}): save it with numpy.save "
                "from a numeric array."
            ) from None
        check_numeric_array(view.dtype, view.ndim, self.path)
        stat = os.stat(path)
        name = "npy-" + tokenize(path, stat.st_size, stat.st_mtime_ns)
        X = _dask_from(view, view.shape, view.dtype, self.chunk_bytes, self.chunk_rows, name)
        desc = {"kind": "npy", "path": path, "shape": list(view.shape),
                "dtype": str(view.dtype), "chunks": list(X.chunks[0]),
                "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        return Dataset(as_float(X), description=desc)
