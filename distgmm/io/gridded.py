"""Gridded data (xarray DataArray / Dataset, N-D Zarr) seen as rows x features, and back.

Rows are all sample dimensions stacked; features are one feature dimension and/or
several variables. The stacking never copies the data and never rechunks along the
sample dimensions:

1. every variable is transposed lazily to ``(*sample_dims, feature_dim)`` (a view of
   each block, no data movement);
2. :func:`dask.array.reshape_blockwise` turns each source block ``(t, y, x, f)`` into a
   block of ``t*y*x`` rows, so row chunk ``r`` of the stacked view IS source block
   number ``r`` (blocks numbered in C order of the block grid), its rows in C order
   inside the block; the row order is therefore block-major, not NumPy's C order of
   the whole grid (identical when the sample dimensions are in one chunk);
3. variables (and chunks along the feature dimension) are joined side by side, and
   runs of consecutive row chunks are merged into chunks of about ``chunk_bytes``:
   both are concatenations of whole source blocks (each output chunk reads a fixed set
   of whole blocks; no chunk is split, so the graph does not multiply).

Results go back the same way: rows are split at the source blocks' boundaries and
``reshape_blockwise`` rebuilds each block, so labels come back chunked exactly like the
input's sample dimensions (aligned Zarr writes). xarray is imported only when gridded
data is used.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def is_xarray(X) -> bool:
    """True for an ``xarray.DataArray`` or ``xarray.Dataset`` (without importing xarray)."""
    return type(X).__module__.split(".")[0] == "xarray" and hasattr(X, "dims")


@dataclass(frozen=True)
class Grid:
    """Where the rows of a stacked view lie on the grid, and what the features are.

    Attributes
    ----------
    sample_dims : tuple of str
    sample_shape : tuple of int
    sample_chunks : tuple of tuple of int
        The source's chunks along the sample dimensions (outputs are chunked alike).
    block_rows : tuple of int
        Rows of each source block, in block-major order (the stacked view's row order).
    feature_dim : str or None
    variables : tuple of str or None
        Data variables of a Dataset, in feature order; None for a DataArray.
    feature_coords : tuple or None
        Values along the feature dimension (its coordinate, or positions).
    feature_names : tuple of str
    coords : Any
        The input's coordinates that lie on sample dimensions only (xarray).
    attrs : dict
        The input's attributes.
    store_chunks : tuple of int or None
        The store's chunk edges along the sample dims (read chunks are whole multiples
        of them); prediction stores are chunked alike.
    """

    sample_dims: tuple
    sample_shape: tuple
    sample_chunks: tuple
    block_rows: tuple
    feature_dim: str | None
    variables: tuple | None
    feature_coords: tuple | None
    feature_names: tuple
    coords: Any = None
    attrs: dict = field(default_factory=dict)
    store_chunks: tuple | None = None

    @property
    def n_rows(self) -> int:
        return int(np.prod(self.sample_shape))

    def features(self) -> dict:
        """What a fitted model remembers of its features (JSON-safe)."""
        return {"feature_dim": self.feature_dim,
                "variables": list(self.variables) if self.variables else None,
                "feature_coords": _json_list(self.feature_coords),
                "feature_names": list(self.feature_names)}


def _json_list(values):
    if values is None:
        return None
    return [v.item() if isinstance(v, np.generic) else
            (str(v) if not isinstance(v, (int, float, str, bool)) else v) for v in values]


def _as_dataset(obj, variables):
    """A Dataset and the variables to use (a DataArray is a one-variable Dataset)."""
    if hasattr(obj, "data_vars"):
        names = list(variables) if variables else list(obj.data_vars)
        unknown = [v for v in names if v not in obj.data_vars]
        if unknown:
            raise ValueError(
                f"No variable(s) {unknown} in the dataset; it holds "
                f"{sorted(map(str, obj.data_vars))}: pick from those (--variables a,b).")
        if not names:
            raise ValueError("The dataset holds no data variables: point at the right "
                             "store or group.")
        return obj, names, True
    name = obj.name if obj.name is not None else "data"
    return obj.to_dataset(name=name), [name], False


def _check_variables(ds, names, feature_dim):
    """Same dims, numeric dtypes, and the feature dimension present."""
    first = ds[names[0]]
    for v in names:
        var = ds[v]
        if var.dtype.kind not in "fiub":
            raise ValueError(
                f"Variable {v!r} has dtype {var.dtype}, which is not a real number type: "
                "leave it out of the variables (--variables) or encode it as numbers.")
        if set(var.dims) != set(first.dims):
            raise ValueError(
                f"Variables {names[0]!r} {tuple(first.dims)} and {v!r} {tuple(var.dims)} "
                "have different dimensions: cluster variables that share their dimensions "
                "(run once per set).")
    if feature_dim is not None and feature_dim not in first.dims:
        raise ValueError(
            f"No dimension {feature_dim!r} in {names[0]!r}, whose dimensions are "
            f"{tuple(map(str, first.dims))}: name one of those as the feature dimension "
            "(--feature-dim).")
    if first.ndim == 0 or (feature_dim is not None and first.ndim == 1):
        raise ValueError(
            f"{names[0]!r} has dimensions {tuple(first.dims)}: there is no sample "
            "dimension left to stack into rows.")


def _blocks_of(var, sample_dims, feature_dim):
    """The variable as a dask array ``(*sample_dims, features)``, source chunks kept."""
    import dask.array as da

    order = (*sample_dims, feature_dim) if feature_dim else tuple(sample_dims)
    data = var.transpose(*order).data
    if not hasattr(data, "__dask_graph__"):  # in memory: one block, C order
        data = da.from_array(np.asarray(data), chunks=-1)
    if not feature_dim:
        data = data[..., None]
    return data


def _feature_names(names, coords, several) -> tuple:
    if coords is None:
        return tuple(names)
    out = []
    for v in names:
        for c in coords:
            c = c.item() if isinstance(c, np.generic) else c
            out.append(f"{v}_{c}" if several else str(c))
    return tuple(out)


def _side_by_side(*blocks, out_dtype=np.float64):
    """The variables' row blocks as one C-ordered block of ``dtype``.

    C order explicitly: a block of a variable transposed to put the feature dim last is
    Fortran-ordered, and so was its concatenation; every pass then copied each chunk
    into C order again (1.4-1.7x the per-iteration time of the same rows in a 2-D
    array, with the data in memory).
    """
    out = np.empty((blocks[0].shape[0], sum(b.shape[1] for b in blocks)), dtype=out_dtype)
    return np.concatenate(blocks, axis=1, out=out, casting="unsafe")


def _grouped(block_rows: tuple, target: int) -> tuple:
    """Runs of consecutive blocks of about ``target`` rows (never a block split)."""
    out, run = [], 0
    for n in block_rows:
        if run and run + n > target:
            out.append(run)
            run = 0
        run += n
    if run or not out:
        out.append(run)
    return tuple(out)


def _sample_coords(ds, sample_dims) -> dict:
    return {k: c.variable for k, c in ds.coords.items() if set(c.dims) <= set(sample_dims)}


def stack(obj, feature_dim: str | None = None, variables=None,
          chunk_bytes: int | None = None):
    """Rows x features view of a DataArray or Dataset, and its :class:`Grid`.

    Parameters
    ----------
    obj : xarray.DataArray or xarray.Dataset
        Dask-backed (never computed here) or in memory.
    feature_dim : str, optional
        The dimension whose positions are features. A DataArray's default is its last
        dimension; a Dataset's default is none (each variable one feature).
    variables : sequence of str, optional
        A Dataset's data variables to use (default: all).
    chunk_bytes : int, optional
        Merge consecutive source blocks into row chunks of about this size (default:
        :data:`distgmm.io.sources.base.DEFAULT_CHUNK_BYTES`, at least 8 chunks).

    Returns
    -------
    X : dask.array.Array of shape (n_rows, n_features)
        Float, features in one chunk, each row chunk whole source blocks.
    grid : Grid
    """
    import dask.array as da

    from .sources.base import DEFAULT_CHUNK_BYTES, chunk_rows

    ds, names, several = _as_dataset(obj, variables)
    if feature_dim is None and not hasattr(obj, "data_vars"):
        feature_dim = obj.dims[-1] if obj.ndim > 1 else None
    _check_variables(ds, names, feature_dim)
    sample_dims = tuple(d for d in ds[names[0]].dims if d != feature_dim)
    parts = [_blocks_of(ds[v], sample_dims, feature_dim) for v in names]
    first = parts[0].chunks[:-1]
    # variables chunked differently along the sample dims follow the first's chunks
    parts = [p if p.chunks[:-1] == first else p.rechunk(first + (p.chunks[-1],))
             for p in parts]
    n = int(np.prod(parts[0].shape[:-1]))
    # a feature dim in several chunks is joined (a merge along that dim only)
    parts = [p if p.numblocks[-1] == 1 else p.rechunk({p.ndim - 1: -1}) for p in parts]
    rows = [da.reshape_blockwise(p, (n, p.shape[-1])) for p in parts]
    dtype = np.result_type(*[r.dtype for r in rows], np.float32)
    # variables side by side, block by block: one blockwise task per row chunk, which
    # the passes fold together with its reads (a concatenate layer would not fold)
    X = da.map_blocks(_side_by_side, *rows, out_dtype=dtype, dtype=dtype,
                      meta=np.empty((0, 0), dtype),
                      chunks=(rows[0].chunks[0], (sum(r.shape[1] for r in rows),)))
    block_rows = tuple(int(c) for c in X.chunks[0])
    target = chunk_rows(X.shape[1], X.dtype.itemsize, chunk_bytes or DEFAULT_CHUNK_BYTES,
                        1, n)
    groups = _grouped(block_rows, target)
    if groups != block_rows:
        X = X.rechunk({0: groups})
    coords = None
    if feature_dim is not None:
        fc = ds[feature_dim].values if feature_dim in ds.coords else \
            np.arange(ds.sizes[feature_dim])
        coords = tuple(fc.tolist())
    grid = Grid(sample_dims, tuple(ds[names[0]].transpose(*sample_dims, ...).shape[
                    :len(sample_dims)]), tuple(first), block_rows, feature_dim,
                tuple(names) if several else None, coords,
                _feature_names(names, coords, several or len(names) > 1),
                _sample_coords(ds, sample_dims), dict(obj.attrs))
    return X, grid


def unstack(values, grid: Grid, extra_dim_size: int | None = None):
    """Per-row results (dask, rows as in :func:`stack`) back on the grid: shape
    ``sample_shape`` (+ ``(extra_dim_size,)``), chunked like the source."""
    import dask.array as da

    v = values.rechunk({0: grid.block_rows})
    shape, chunks = grid.sample_shape, grid.sample_chunks
    if values.ndim == 2:
        shape, chunks = shape + (values.shape[1],), chunks + ((values.shape[1],),)
        v = v.rechunk({1: -1})
    return da.reshape_blockwise(v, shape, chunks=chunks)


def as_dataarray(values, grid: Grid, name: str, extra_dim: str | None = None):
    """Lazy DataArray of per-row results on the grid, with the input's coordinates."""
    import xarray as xr

    dims = grid.sample_dims + ((extra_dim,) if values.ndim == 2 else ())
    return xr.DataArray(unstack(values, grid), dims=dims, coords=grid.coords, name=name)


def check_features(fitted: dict | None, grid: Grid) -> None:
    """Gridded input to predict must have the fit's feature dim, variables and
    feature coordinates (by name and value, not only by count)."""
    if not fitted:
        return
    now = grid.features()
    for key, what in (("feature_dim", "feature dimension"), ("variables", "variables"),
                      ("feature_coords", f"coordinates along {fitted['feature_dim']!r}")):
        if fitted[key] != now[key]:
            raise ValueError(
                f"The data's {what} {now[key]!r} differ from the fit's {fitted[key]!r}: "
                f"give data with the same {what} (select or reorder them, e.g. "
                ".sel()/.transpose()).")


RESULT_DIMS = {"label": None, "probabilities": "component", "log_likelihood": None}


def rows_for(model, X, sample_weight, feature_dim: str | None, *, reset: bool):
    """``(rows, grid)``: xarray input as a lazy rows x features dask array, checked
    against (or, with ``reset``, remembered as) the model's fitted features; other input
    is returned as is with ``grid=None``."""
    if not is_xarray(X):
        if reset and hasattr(model, "gridded_features_"):  # a refit on other data
            del model.gridded_features_
        return X, None
    if sample_weight is not None:
        raise ValueError("sample_weight is not taken with xarray input: omit it, or give "
                         "the stacked rows (a dask array) with per-row weights.")
    fitted = None if reset else getattr(model, "gridded_features_", None)
    variables = None
    if fitted:
        feature_dim = feature_dim if feature_dim is not None else fitted["feature_dim"]
        variables = fitted["variables"]
    rows, grid = stack(X, feature_dim, variables)
    if reset:
        model.gridded_features_ = grid.features()
    else:
        check_features(fitted, grid)
    return rows, grid


def result_for(values, grid: Grid | None, kind: str):
    """Per-row results as a lazy DataArray on the input's grid (``values`` unchanged
    for other input)."""
    if grid is None:
        return values
    return as_dataarray(values, grid, kind, RESULT_DIMS[kind])


def _cf_attrs(kind: str, n_components: int) -> dict:
    """CF-style attributes of each output variable."""
    if kind == "label":
        # no _FillValue: xarray would decode -1 to NaN and the labels to floats
        return {"long_name": "most probable mixture component (-1: missing input)",
                "flag_values": list(range(-1, n_components)),
                "flag_meanings": " ".join(["missing"] + [f"component_{j}"
                                                         for j in range(n_components)])}
    if kind == "probabilities":
        return {"long_name": "posterior probability of each mixture component",
                "units": "1"}
    return {"long_name": "log-likelihood of the features under the mixture"}


def prediction_dataset(dataset, labels, loglik, proba, opts, n_components: int):
    """The chosen per-row results as an xarray Dataset on the input's grid (lazy)."""
    import xarray as xr

    grid = dataset.grid
    wanted = {"label": (labels.astype(np.int32), opts.labels),
              "probabilities": (proba, opts.probabilities),
              "log_likelihood": (loglik, opts.log_likelihood)}
    data_vars = {}
    for kind, (values, keep) in wanted.items():
        if keep:
            arr = as_dataarray(values, grid, kind, RESULT_DIMS[kind])
            data_vars[kind] = arr.assign_attrs(_cf_attrs(kind, n_components))
    coords = {k: xr.Variable(v.dims, v.data, v.attrs) for k, v in (grid.coords or {}).items()}
    if "probabilities" in data_vars:
        coords["component"] = ("component", np.arange(n_components))
    attrs = {**grid.attrs, "n_components": n_components,
             "input": json.dumps(dataset.description, default=str)}
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)


def gridded_predictions(dataset, params, url: str, opts, storage_options: dict | None):
    """Lazy prediction pass of gridded input into ``url`` (``predictions.zarr``) as a
    Dataset that ``xarray.open_zarr`` opens: the input's sample dims, coordinates and
    attributes, chunks equal to the input's sample chunks (aligned writes)."""
    import dask.array as da
    import zarr

    from ..parallel.missing import masked_all
    from ..parallel.predict import predict_all_dask
    from .outputs import PendingPredictions, consolidate

    if opts.missing == "omit":
        labels, loglik, proba = masked_all(predict_all_dask, dataset.X, params)
    else:
        labels, loglik, proba = predict_all_dask(dataset.X, params)
    writes = []
    if opts.any:
        out = prediction_dataset(dataset, labels, loglik, proba, opts, params.n_components)
        grid = dataset.grid
        encoding = {name: {"chunks": list(grid.store_chunks or [max(c) for c in v.chunks[
            :len(grid.sample_dims)]]) + [max(c) for c in v.chunks[len(grid.sample_dims):]]}
            for name, v in out.data_vars.items()}
        for name in ("probabilities", "log_likelihood"):
            if name in encoding:
                encoding[name]["_FillValue"] = np.nan
        # the metadata is written now, the data by the pass; consolidated here (only
        # metadata), as xarray would at the end of the pass
        writes = [out.to_zarr(url, mode="w-", compute=False, consolidated=False,
                              encoding=encoding, storage_options=storage_options or None)]
        consolidate(zarr.open_group(url, mode="r+", storage_options=storage_options or None
                                    ).store)
    sizes = da.bincount(labels + 1, minlength=params.n_components + 1)[1:]
    total = da.nansum(loglik) if opts.missing == "omit" else loglik.sum()
    return PendingPredictions(writes, total, sizes, url if writes else None)


def report_terms(dataset, model) -> list:
    """Lazy labels of the first 2-D slice of the sample dims (e.g. the first time step),
    for the report's map; empty when there is a single sample dim."""
    from ..parallel.missing import masked_result
    from ..parallel.predict import predict_dask

    grid = dataset.grid
    if len(grid.sample_dims) < 2:
        return []
    params = model.fitted_params()
    if model.missing == "omit":
        labels = masked_result(predict_dask, dataset.X, params, -1)
    else:
        labels = predict_dask(dataset.X, params)
    labels = unstack(labels, grid)
    return [labels[(0,) * (labels.ndim - 2)]]


def read_chunks(sizes: dict, store_chunks: dict, feature_dim: str | None, n_features: int,
                itemsize: int, chunk_bytes: int) -> dict:
    """Dask chunks for reading a store: whole store chunks merged, innermost sample dim
    first, to about ``chunk_bytes`` of rows; all of ``feature_dim`` in one chunk.

    One read then fetches many store chunks in one call to zarr (which fetches them
    concurrently) instead of one task per store chunk.
    """
    from .sources.base import chunk_rows

    dims = [d for d in sizes if d != feature_dim]
    n_rows = int(np.prod([sizes[d] for d in dims]))
    target = chunk_rows(n_features, itemsize, chunk_bytes, 1, n_rows)
    out = {d: min(int(store_chunks.get(d) or sizes[d]), sizes[d]) for d in dims}
    for d in reversed(dims):
        rows = int(np.prod(list(out.values())))
        if rows >= target:
            break
        out[d] = min(sizes[d], out[d] * max(1, target // rows))
    if feature_dim is not None:
        out[feature_dim] = -1
    return out
