"""Per-row results (labels, probabilities, log-likelihood) to Zarr or Parquet, and metrics.

All writers return lazy tasks, so writing the results and the final statistics
(total log-likelihood, cluster sizes) share one pass over the data. They write into a
staging location given by :class:`distgmm.io.publish.Publication`.
"""

from __future__ import annotations

import json
import math
import posixpath
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..numerics.params import GMMParams
from ..numerics.predict import predict_all_block
from ..options import OUTPUT_FORMATS, TABLE_OUTPUT_FORMATS

PREDICTIONS = {"zarr": "predictions.zarr", "parquet": "predictions.parquet",
               "delta": "predictions.delta", "icechunk": "predictions.icechunk"}
ROW_DIMS = ("row", "component")
"""Dimension names of 2-D input's prediction arrays (Zarr v3 ``dimension_names``)."""


@dataclass(frozen=True)
class PredictionOptions:
    """Which per-row results to write, and how."""

    labels: bool = True
    probabilities: bool = False
    log_likelihood: bool = False
    format: str = "auto"
    # a model's outlier threshold: an ``outlier`` column, log-likelihood <= threshold
    outlier_threshold: float | None = None
    missing: str = "error"  # "omit": rows holding NaN get label -1 and NaN results

    @property
    def any(self) -> bool:
        return (self.labels or self.probabilities or self.log_likelihood
                or self.outlier_threshold is not None)

    def resolve_format(self, dataset) -> str:
        """Parquet for tabular inputs, Zarr otherwise, unless chosen; refused where the
        input cannot take it (checked before the fit, not after)."""
        if self.format not in OUTPUT_FORMATS:
            raise ValueError(f"output format {self.format!r} is not one of {OUTPUT_FORMATS}.")
        if getattr(dataset, "grid", None) is not None and self.format == "parquet":
            raise ValueError("Gridded input writes its results as predictions.zarr on the "
                             "input's grid: drop --output-format parquet.")
        if self.format != "auto":
            return self.format
        return "parquet" if dataset.frame is not None else "zarr"


@dataclass
class PendingPredictions:
    """Lazy work of the prediction pass."""

    writes: list
    total_log_likelihood: object
    cluster_sizes: object
    path: str | None
    outliers: object = None  # lazy count of flagged rows, with a threshold
    # table formats: called with the computed ``writes``; commits them, returns a summary
    commit: Callable | None = None


def _aligned(dask_chunks: tuple, zarr_rows: int) -> bool:
    return all(c == zarr_rows for c in dask_chunks[:-1]) and dask_chunks[-1] <= zarr_rows


def _zarr_predictions(dataset, params: GMMParams, url: str, opts: PredictionOptions,
                      storage_options: dict | None) -> PendingPredictions:
    import dask.array as da
    import zarr

    from ..parallel.missing import masked_all
    from ..parallel.predict import predict_all_dask

    if opts.missing == "omit":
        labels, loglik, proba = masked_all(predict_all_dask, dataset.X, params)
    else:
        labels, loglik, proba = predict_all_dask(dataset.X, params)
    wanted = {"label": (labels.astype(np.int32), opts.labels),
              "log_likelihood": (loglik, opts.log_likelihood),
              "probabilities": (proba, opts.probabilities)}
    flagged = None if opts.outlier_threshold is None else loglik <= opts.outlier_threshold
    if flagged is not None:
        wanted["outlier"] = (flagged, True)
    sources, targets = [], []
    if opts.any:
        group = zarr.open_group(url, mode="w-", storage_options=storage_options or None)
        group.attrs.update({"n_components": params.n_components, "input": dataset.description})
        rows = max(dataset.X.chunks[0])
        for name, (arr, keep) in wanted.items():
            if not keep:
                continue
            arr = arr.rechunk({0: rows})
            z = group.create_array(name, shape=arr.shape, dtype=arr.dtype,
                                   chunks=(rows,) + arr.shape[1:],
                                   dimension_names=ROW_DIMS[:arr.ndim])
            # misaligned dask -> zarr writes can lose data silently (zarr-python #3682)
            if not _aligned(arr.chunks[0], z.chunks[0]):
                raise RuntimeError(f"dask chunks {arr.chunks[0]} do not align with Zarr "
                                   f"chunks {z.chunks}; refusing to write.")
            sources.append(arr)
            targets.append(z)
    if sources:
        consolidate(group.store)
    writes = []
    if sources:
        stored = da.store(sources, targets, lock=False, compute=False)
        # one lazy collection per target (a tuple when there are several)
        writes = list(stored) if isinstance(stored, (tuple, list)) else [stored]
    # omitted rows (label -1, NaN log-likelihood) are in neither statistic
    sizes = da.bincount(labels + 1, minlength=params.n_components + 1)[1:]
    total = da.nansum(loglik) if opts.missing == "omit" else loglik.sum()
    return PendingPredictions(writes, total, sizes, url if sources else None,
                              None if flagged is None else flagged.sum())


def consolidate(store) -> None:
    """Consolidate a group's metadata (only metadata: arrays' data may come later), so
    ``xarray.open_zarr`` opens it without a warning or a listing of the store."""
    import warnings

    import zarr

    with warnings.catch_warnings():
        # zarr says consolidated metadata is not in the v3 spec; xarray reads it anyway
        warnings.simplefilter("ignore", UserWarning)
        zarr.consolidate_metadata(store)


def prediction_frame(part, params: GMMParams, features: list, keep: list,
                     opts: PredictionOptions, offsets=None, partition_info=None):
    """One partition's output table: kept columns, then the chosen results.

    ``offsets[i]`` is the global row number of partition ``i``'s first row (errors
    name global rows).
    """
    import pandas as pd

    X = part[features].to_numpy(dtype=np.float64, na_value=np.nan)
    start = 0
    if offsets is not None and partition_info is not None:
        start = int(offsets[partition_info["number"]])
    if opts.missing == "omit":
        from ..parallel.missing import masked_all

        res = np.column_stack(masked_all(predict_all_block, X, params))
    else:
        res = predict_all_block(X, params, start)
    out = {"label": res[:, 0].astype(np.int32), "log_likelihood": res[:, 1]}
    if opts.probabilities:
        for j in range(params.n_components):
            out[f"prob_{j}"] = res[:, 2 + j]
    if opts.outlier_threshold is not None:
        out["outlier"] = res[:, 1] <= opts.outlier_threshold
    # kept columns keep their dtypes (strings stay strings in the written schema)
    return pd.concat([part[keep], pd.DataFrame(out, index=part.index)], axis=1)


def result_columns(n_components: int, outlier: bool = False) -> list[str]:
    """The columns a tabular output adds to the id and passthrough columns."""
    return (["label", "log_likelihood"] + [f"prob_{j}" for j in range(n_components)]
            + (["outlier"] if outlier else []))


def check_column_clash(kept, n_components: int, outlier: bool = False) -> None:
    """Refuse id/passthrough columns named like an output column (before any work)."""
    clash = sorted(set(c for c in kept if c) & set(result_columns(n_components, outlier)))
    if clash:
        raise ValueError(f"Column(s) {clash} clash with output columns: drop them from the "
                         "id/passthrough columns.")


def prediction_table(dataset, params: GMMParams, opts: PredictionOptions):
    """The lazy per-row output table, the columns to write, and whether its index (the
    row number, for inputs without an id) is one of them."""
    import dask.dataframe as dd
    from dask.dataframe.utils import make_meta

    features = list(dataset.feature_names or [f"x{j}" for j in range(dataset.n_features)])
    if dataset.frame is not None:
        frame, write_index = dataset.frame, False
        if frame.npartitions != dataset.X.numblocks[0]:
            raise RuntimeError("input table and array partitions differ; refusing to write.")
        keep = list(dict.fromkeys(c for c in (dataset.id_column, *dataset.passthrough) if c))
    else:
        frame = dd.from_dask_array(dataset.X, columns=features).rename_axis("row")
        write_index, keep = True, []
    check_column_clash(keep, params.n_components, opts.outlier_threshold is not None)
    meta = prediction_frame(make_meta(frame), params, features, keep, opts)
    offsets = np.concatenate([[0], np.cumsum(dataset.X.chunks[0])[:-1]]).astype(np.int64)
    pred = frame.map_partitions(prediction_frame, params, features, keep, opts, offsets,
                                meta=meta)
    columns = keep + [c for c in meta.columns if c not in keep and (
        (c == "label" and opts.labels) or (c == "log_likelihood" and opts.log_likelihood)
        or (c.startswith("prob_") and opts.probabilities) or c == "outlier")]
    return pred, columns, write_index


def _parquet_predictions(dataset, params: GMMParams, url: str, opts: PredictionOptions,
                         storage_options: dict | None) -> PendingPredictions:
    pred, columns, write_index = prediction_table(dataset, params, opts)
    writes = []
    if opts.any:
        writes = [pred[columns].to_parquet(url, write_index=write_index, compute=False,
                                           storage_options=storage_options or None)]
    sizes = pred["label"].value_counts()
    flagged = None if opts.outlier_threshold is None else pred["outlier"].sum()
    return PendingPredictions(writes, pred["log_likelihood"].sum(), sizes,
                              url if writes else None, flagged)


def predictions(dataset, params: GMMParams, staging_url: str, opts: PredictionOptions,
                storage_options: dict | None = None, table=None) -> PendingPredictions:
    """Lazy prediction pass writing under ``staging_url`` in the chosen format.

    Parameters
    ----------
    dataset : distgmm.io.sources.Dataset
    params : GMMParams
    staging_url : str
        Directory the results go into (``predictions.zarr`` or ``predictions.parquet``).
    opts : PredictionOptions
    storage_options : dict, optional
    table : distgmm.io.table_outputs.TableTarget, optional
        For the ``delta`` and ``icechunk`` formats: the table committed to (default
        ``predictions.delta`` / ``predictions.icechunk`` in the staging directory).

    Returns
    -------
    PendingPredictions
        Compute ``writes``, ``total_log_likelihood`` and ``cluster_sizes`` together,
        then call ``commit`` (table formats) with the computed writes.
    """
    fmt = opts.resolve_format(dataset)
    if fmt in TABLE_OUTPUT_FORMATS:
        from .table_outputs import table_predictions

        return table_predictions(fmt, dataset, params, staging_url, opts, storage_options,
                                 table)
    url = posixpath.join(staging_url, PREDICTIONS[fmt])
    if getattr(dataset, "grid", None) is not None:  # results back on the input's grid
        from .gridded import gridded_predictions

        return gridded_predictions(dataset, params, url, opts, storage_options)
    make = _zarr_predictions if fmt == "zarr" else _parquet_predictions
    return make(dataset, params, url, opts, storage_options)


def sizes_array(sizes, n_components: int) -> list[int]:
    """Cluster sizes as a list of K ints (from a bincount or a value_counts)."""
    if hasattr(sizes, "reindex"):
        sizes = sizes.reindex(range(n_components), fill_value=0).to_numpy()
    return [int(v) for v in np.asarray(sizes)]


def _json_safe(value):
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return _json_safe(value.tolist())
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def write_json(url: str, name: str, document: dict, storage_options: dict | None = None) -> None:
    """Write ``document`` as ``url/name`` (non-finite numbers become null)."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(url, **(storage_options or {}))
    fs.pipe_file(posixpath.join(path, name),
                 json.dumps(_json_safe(document), indent=2, allow_nan=False).encode())
