"""Zarr arrays (format 2 or 3): local directories, ``.zip`` files and fsspec URLs."""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field

from ..zarr_rows import ZarrRows
from .base import DEFAULT_CHUNK_BYTES, Dataset, as_float, check_numeric_array, chunk_rows


def _open_node(path: str, storage_options: dict):
    import os

    import zarr

    if "://" not in path:
        if storage_options:
            raise ValueError(f"storage_options apply to URLs, not to the local path {path}: "
                             "drop them or give a URL.")
        path = os.path.abspath(path)  # workers may run in another directory
    try:
        if path.endswith(".zip"):
            if "://" in path:
                raise ValueError(f"{path}: zipped Zarr stores are read from local paths "
                                 "only; unzip it to a directory or object store.")
            store = zarr.storage.ZipStore(path, mode="r")
            return zarr.open(store=store, mode="r")
        return zarr.open(store=path, mode="r", storage_options=storage_options or None)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"No Zarr array or group at {path}: check the input path (and "
            "storage_options for remote stores)."
        ) from None
    except (KeyError, AttributeError, TypeError, zipfile.BadZipFile, json.JSONDecodeError,
            ValueError) as e:
        if isinstance(e, ValueError) and str(e).startswith(path):
            raise
        raise ValueError(
            f"{path}: unreadable Zarr metadata ({type(e).__name__}: "
            f"{' '.join(str(e).split())[:160]}): check that it is an intact Zarr store."
        ) from None


def _arrays_in(group) -> list[str]:
    return sorted(name for name, node in group.members(max_depth=None)
                  if not hasattr(node, "members"))


def open_zarr_array(path: str, array: str | None = None, storage_options: dict | None = None):
    """The zarr array at ``path`` (or ``path``/``array`` inside a group)."""
    node = _open_node(path, storage_options or {})
    if array:
        if not hasattr(node, "members"):
            raise ValueError(f"{path} is an array, not a group: drop the array name {array!r}.")
        try:
            node = node[array]
        except KeyError:
            raise ValueError(
                f"No array {array!r} in the Zarr group {path}; it holds "
                f"{_arrays_in(node) or 'no arrays'}: pick one of those."
            ) from None
    if hasattr(node, "members"):
        names = _arrays_in(node)
        if len(names) != 1:
            raise ValueError(
                f"{path} is a Zarr group holding {names or 'no arrays'}: name the array "
                "to cluster with --array (or input.array in a job spec)."
            )
        node = node[names[0]]
    return node


@dataclass(frozen=True)
class ZarrSource:
    """A 2-D Zarr array, read chunk by chunk by the workers.

    Parameters
    ----------
    path : str
        Local directory, ``.zip`` file, or fsspec URL (``s3://``, ``memory://``, ...).
    array : str, optional
        Path of the array inside a group.
    storage_options : dict
        Passed to fsspec for URLs.
    chunk_bytes : int
        Target bytes per row chunk; chunks are whole Zarr chunks.
    chunk_rows : int, optional
        Rows per dask chunk (overrides ``chunk_bytes``).
    """

    path: str
    array: str | None = None
    storage_options: dict = field(default_factory=dict)
    chunk_bytes: int = DEFAULT_CHUNK_BYTES
    chunk_rows: int | None = None

    def load(self) -> Dataset:
        import dask.array as da

        z = open_zarr_array(self.path, self.array, self.storage_options)
        where = self.path + (f" (array {self.array!r})" if self.array else "")
        check_numeric_array(z.dtype, z.ndim, where)
        store_rows = z.chunks[0]
        rows = self.chunk_rows or chunk_rows(z.shape[1], z.dtype.itemsize, self.chunk_bytes,
                                             store_rows, z.shape[0])
        from dask.base import tokenize

        name = "from-zarr-" + tokenize(self.path, self.array, z.shape, z.dtype.str, z.chunks,
                                       rows, str(z.metadata))
        X = da.from_array(ZarrRows(z, where), chunks=(rows, z.shape[1]), name=name,
                          asarray=True, inline_array=False)
        desc = {
            "kind": "zarr", "path": self.path, "array": self.array, "shape": list(z.shape),
            "dtype": str(z.dtype), "zarr_format": z.metadata.zarr_format,
            "store_chunks": list(z.chunks), "chunks": list(X.chunks[0]),
        }
        names = z.attrs.get("feature_names")
        names = tuple(names) if isinstance(names, list) and len(names) == z.shape[1] else None
        return Dataset(as_float(X), names, description=desc)
