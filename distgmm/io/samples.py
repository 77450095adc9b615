"""Writing a generated sample (rows and, optionally, their components) to Zarr or Parquet.

The writers return lazy tasks writing chunk by chunk from the workers into a staging
location given by :class:`distgmm.io.publish.Publication`.

``OUT.zarr``: a group with ``X`` (n, d) float64 and ``component`` (n,) int32, chunked by
rows alike; its attributes say how the sample was drawn. ``OUT.parquet``: a dataset
with one float64 column per feature (the model's feature names, else ``x0``, ``x1``,
...) and ``component`` (int32).
"""

from __future__ import annotations

import numpy as np

from ..options import OUTPUT_FORMATS

COMPONENT = "component"


def sample_format(url: str, fmt: str = "auto") -> str:
    """The output format: as given, else told by the suffix ``.zarr`` / ``.parquet``."""
    if fmt not in OUTPUT_FORMATS:
        raise ValueError(f"output format {fmt!r} is not one of {OUTPUT_FORMATS}.")
    if fmt != "auto":
        return fmt
    name = url.rstrip("/").lower()
    for suffix in ("zarr", "parquet"):
        if name.endswith("." + suffix):
            return suffix
    raise ValueError(f"cannot tell the format of {url} from its name: end it in .zarr or "
                     ".parquet, or pass --output-format zarr|parquet.")


def column_names(feature_names, n_features: int, component: bool = True) -> list[str]:
    """Feature columns of a sample, checked against ``component`` when it is written."""
    names = [str(n) for n in feature_names] if feature_names is not None else [
        f"x{j}" for j in range(n_features)]
    if component and COMPONENT in names:
        raise ValueError(f"a feature is named {COMPONENT!r}, like the component column: "
                         "write the sample without --component or rename the feature.")
    return names


def _zarr_writes(X, component, url: str, attrs: dict, storage_options) -> list:
    import dask.array as da
    import zarr

    group = zarr.open_group(url, mode="w-", storage_options=storage_options or None)
    group.attrs.update(attrs)
    rows = X.chunks[0][0]
    sources, targets = [X], [group.create_array("X", shape=X.shape, dtype=X.dtype,
                                                chunks=(rows, X.shape[1]))]
    if component is not None:
        sources.append(component)
        targets.append(group.create_array(COMPONENT, shape=component.shape,
                                          dtype=component.dtype, chunks=(rows,)))
    for arr, z in zip(sources, targets):
        # misaligned dask -> zarr writes can lose data silently (zarr-python #3682)
        if any(c != z.chunks[0] for c in arr.chunks[0][:-1]):
            raise RuntimeError(f"dask chunks {arr.chunks[0]} do not align with Zarr chunks "
                               f"{z.chunks}; refusing to write.")
    stored = da.store(sources, targets, lock=False, compute=False)
    return list(stored) if isinstance(stored, (tuple, list)) else [stored]


def _parquet_writes(X, component, url: str, names: list, storage_options) -> list:
    import dask.array as da
    import dask.dataframe as dd

    if component is None:
        frame = dd.from_dask_array(X, columns=names)
    else:
        both = da.concatenate([X, component[:, None].astype(np.float64)], axis=1)
        frame = dd.from_dask_array(both, columns=[*names, COMPONENT]).astype(
            {COMPONENT: "int32"})
    return [frame.to_parquet(url, write_index=False, compute=False,
                             storage_options=storage_options or None)]


def sample_writes(X, component, url: str, fmt: str, *, feature_names=None,
                  attrs: dict | None = None, storage_options: dict | None = None) -> list:
    """Lazy writes of a sample into ``url`` (a staging location).

    Parameters
    ----------
    X : dask.array.Array of shape (n, d)
    component : dask.array.Array of shape (n,) or None
    url : str
    fmt : {"zarr", "parquet"}
    feature_names : list of str, optional
        Parquet column names (and a Zarr attribute).
    attrs : dict, optional
        Zarr group attributes (how the sample was drawn).
    storage_options : dict, optional

    Returns
    -------
    list
        Dask collections; computing them writes every chunk from the workers.
    """
    names = column_names(feature_names, X.shape[1], component is not None)
    if fmt == "zarr":
        return _zarr_writes(X, component, url, {**(attrs or {}), "columns": names},
                            storage_options)
    return _parquet_writes(X, component, url, names, storage_options)
