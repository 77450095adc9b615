"""Gridded Zarr input: an N-D array with dimension names, or a group written by xarray.

Rows are the sample dimensions stacked, features one feature dimension and/or several
variables (:mod:`distgmm.io.gridded` says how row chunks map to whole source chunks).
Values equal to a variable's ``_FillValue`` / ``missing_value`` become NaN (xarray's
CF decoding), so ``missing="omit"`` leaves them out.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field, replace

import numpy as np

from .base import DEFAULT_CHUNK_BYTES, Dataset
from .zarr import ZarrRows, _open_node, open_zarr_array


def _array_dims(z) -> list[str]:
    """Dimension names from the metadata (v3 ``dimension_names``, v2 ``_ARRAY_DIMENSIONS``)."""
    names = getattr(z.metadata, "dimension_names", None) or z.attrs.get("_ARRAY_DIMENSIONS")
    if names and all(names) and len(names) == z.ndim:
        return [str(n) for n in names]
    return [f"dim_{i}" for i in range(z.ndim)]


def _open_array(path, array, storage_options, feature_dim, feature_axis, chunk_bytes):
    """A lone N-D Zarr array as a lazy DataArray named by its metadata."""
    import dask.array as da
    import xarray as xr

    z = open_zarr_array(path, array, storage_options)
    dims = _array_dims(z)
    if feature_axis is not None:
        if not -z.ndim <= feature_axis < z.ndim:
            raise ValueError(f"--feature-axis {feature_axis} is out of range for the "
                             f"{z.ndim}-D array {path}: give 0..{z.ndim - 1}.")
        if feature_dim is not None and feature_dim != dims[feature_axis]:
            raise ValueError("Give --feature-dim or --feature-axis, not both.")
        feature_dim = dims[feature_axis]
    if feature_dim is None:
        raise ValueError(f"{path} is a {z.ndim}-D array with dimensions {tuple(dims)}: "
                         "name the feature dimension with --feature-dim (or --feature-axis).")
    if np.dtype(z.dtype).kind not in "fiub":
        raise ValueError(f"{path} has dtype {z.dtype}, which is not a real number type: "
                         "store the features as integers or floats.")
    from ..gridded import read_chunks

    if feature_dim not in dims:
        raise ValueError(f"No dimension {feature_dim!r} in {path}, whose dimensions are "
                         f"{tuple(dims)}: name one of those (--feature-dim), or give "
                         "--feature-axis.")
    sizes = dict(zip(dims, z.shape))
    merged = read_chunks(sizes, dict(zip(dims, z.chunks)), feature_dim,
                         sizes[feature_dim], z.dtype.itemsize, chunk_bytes)
    data = da.from_array(ZarrRows(z, path), asarray=True, inline_array=False,
                         chunks=tuple(sizes[d] if merged[d] == -1 else merged[d] for d in dims))
    fill = z.attrs.get("_FillValue", z.attrs.get("missing_value"))
    if fill is not None:  # CF: the fill value marks a missing value
        data = data.astype(np.float64)
        data = da.where(data == fill, np.nan, data)
    return xr.DataArray(data, dims=dims, attrs=dict(z.attrs)), feature_dim, z


@dataclass(frozen=True)
class GriddedSource:
    """An N-D Zarr array or an xarray-written Zarr group, stacked into rows lazily.

    Parameters
    ----------
    path : str
        Local directory or fsspec URL of the store.
    variables : tuple of str
        Data variables of a group (each one feature, or one per position along
        ``feature_dim``).
    feature_dim : str, optional
        Dimension whose positions are features (by name, from the store's metadata).
    feature_axis : int, optional
        The feature dimension by position, for arrays without dimension names.
    array : str, optional
        An N-D array inside a group (instead of ``variables``).
    storage_options : dict
    chunk_bytes : int
        Target bytes per row chunk (consecutive whole source chunks are merged).
    """

    path: str
    variables: tuple[str, ...] = ()
    feature_dim: str | None = None
    feature_axis: int | None = None
    array: str | None = None
    storage_options: dict = field(default_factory=dict)
    chunk_bytes: int = DEFAULT_CHUNK_BYTES

    def _open(self):
        """``(xarray object, feature_dim, description)``."""
        node = _open_node(self.path, self.storage_options or {})
        if self.variables or (hasattr(node, "members") and not self.array):
            return self._open_group()
        obj, feature_dim, z = _open_array(self.path, self.array, self.storage_options,
                                          self.feature_dim, self.feature_axis,
                                          self.chunk_bytes)
        return obj, feature_dim, {"zarr_format": z.metadata.zarr_format,
                                  "store_chunks": list(z.chunks),
                                  "store_chunk_sizes": dict(zip(obj.dims, z.chunks))}

    def _open_group(self):
        import xarray as xr

        if self.feature_axis is not None:
            raise ValueError("--feature-axis applies to a lone array; name the feature "
                             "dimension of a group's variables with --feature-dim.")
        url = self.path if "://" in self.path else os.path.abspath(self.path)
        try:  # chunks={}: dask chunks are the store's chunks
            ds = xr.open_zarr(url, chunks={}, consolidated=None,
                              storage_options=self.storage_options or None)
        except (KeyError, ValueError, TypeError) as e:
            raise ValueError(
                f"{self.path}: not a Zarr group written by xarray ({type(e).__name__}: "
                f"{' '.join(str(e).split())[:160]}): give --array and --feature-dim for "
                "a lone array.") from None
        if not self.variables:
            raise ValueError(f"{self.path} is a Zarr group holding variables "
                             f"{sorted(map(str, ds.data_vars))}: pick them with "
                             "--variables a,b (input.variables in a job spec).")
        chunks = self._read_chunks(ds)
        store = dict(ds[self.variables[0]].encoding.get("preferred_chunks") or {}) \
            if chunks else None
        if chunks:  # metadata only: the same store, read in bigger whole-chunk pieces
            # inline_array: each read task carries the (small) store handle; as one
            # shared graph key it would pull every read onto the worker holding it
            with warnings.catch_warnings():  # "not consolidated" was said once above
                warnings.simplefilter("ignore", RuntimeWarning)
                ds = xr.open_dataset(url, engine="zarr", chunks=chunks, inline_array=True,
                                     consolidated=None,
                                     storage_options=self.storage_options or None)
        return ds, self.feature_dim, {"store_chunk_sizes": store}

    def _read_chunks(self, ds) -> dict | None:
        """Dask chunks of whole store chunks (None where stack() will refuse the input)."""
        from ..gridded import read_chunks

        names = list(self.variables)
        if any(v not in ds.data_vars for v in names):
            return None
        first = ds[names[0]]
        if (self.feature_dim is not None and self.feature_dim not in first.dims) or any(
                set(ds[v].dims) != set(first.dims) for v in names):
            return None
        store = first.encoding.get("preferred_chunks") or {}
        n_features = sum(ds[v].sizes.get(self.feature_dim, 1) for v in names)
        return read_chunks(dict(first.sizes), store, self.feature_dim, n_features,
                           max(ds[v].dtype.itemsize for v in names), self.chunk_bytes)

    def load(self) -> Dataset:
        from ..gridded import stack

        obj, feature_dim, more = self._open()
        X, grid = stack(obj, feature_dim, self.variables or None, self.chunk_bytes)
        store = more.pop("store_chunk_sizes", None)
        if store:  # outputs are chunked like the store (reads are whole multiples)
            grid = replace(grid, store_chunks=tuple(
                min(int(store.get(d) or n), n) for d, n in zip(grid.sample_dims,
                                                                grid.sample_shape)))
        desc = {"kind": "zarr-gridded", "path": self.path, "shape": list(X.shape),
                "dtype": str(X.dtype), "variables": list(self.variables) or None,
                "array": self.array, "feature_dim": grid.feature_dim,
                "sample_dims": list(grid.sample_dims),
                "sample_shape": list(grid.sample_shape),
                "sample_chunks": [list(c) for c in grid.sample_chunks],
                "chunks": list(X.chunks[0]), **more}
        return Dataset(X, grid.feature_names, description=desc, grid=grid)
