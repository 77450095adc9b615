"""Checks and conversions of user input: numpy, pandas, dask arrays and DataFrames.

Errors are one line naming the problem and the fix.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.utils.validation import validate_data

from ..numerics.finite import NonFiniteError, nonfinite_summary


def is_dask(X) -> bool:
    """True for dask collections (arrays, DataFrames, Series)."""
    return hasattr(X, "__dask_graph__") and type(X).__module__.startswith("dask")


def _numeric_kind(dtype) -> bool:
    return getattr(dtype, "kind", "O") in "fiub" or _is_decimal(dtype)


def _is_decimal(dtype) -> bool:
    """Arrow decimals (Parquet ``decimal128``): numbers, converted to float64."""
    arrow = getattr(dtype, "pyarrow_dtype", None)
    return arrow is not None and str(arrow).startswith("decimal")


def _identity(part):
    return part


def fixed_partitions(df):
    """``df`` with its partitioning fixed once.

    dask-expr fuses Parquet partitions during optimisation depending on the columns
    projected, so row counts computed from one projection (``lengths=True``) need not
    match the partitions of another; one optimised expression behind an opaque
    ``map_partitions`` gives every later projection the same partitions.
    """
    from dask.dataframe.utils import make_meta

    return df.map_partitions(_identity, meta=make_meta(df)).optimize()


def check_columns(columns, dtypes) -> None:
    """Reject non-numeric feature columns by name."""
    bad = [str(c) for c, t in zip(columns, dtypes) if not _numeric_kind(t)]
    if bad:
        raise ValueError(
            f"Non-numeric feature column(s) {bad}: select numeric columns only, or "
            "encode these as numbers before fitting."
        )


def check_finite(X: np.ndarray, names=None) -> None:
    """Raise naming how many values are NaN/inf and the first row and column (by its
    name, when ``names`` are given)."""
    if not np.isfinite(X).all():
        raise NonFiniteError(*nonfinite_summary(X), span=(0, X.shape[0] - 1), names=names)


def check_ndim(ndim: int) -> None:
    """Data must be 2-D: rows are samples, columns features."""
    if ndim != 2:
        raise ValueError(
            f"Expected a 2D array, got a {ndim}D array instead. Reshape your data with "
            "X.reshape(-1, 1) for a single feature or X.reshape(1, -1) for a single sample."
        )


def check_sample_weight(sample_weight, n_samples: int) -> np.ndarray:
    """Validated float64 weights of shape (n_samples,)."""
    w = np.asarray(sample_weight, dtype=np.float64)
    if w.ndim == 0:
        w = np.full(n_samples, float(w))
    if w.shape != (n_samples,):
        raise ValueError(
            f"sample_weight.shape == {w.shape}, expected {(n_samples,)}: give one weight per row."
        )
    check_weight_summary(bool(np.isfinite(w).all()), float(w.min()), float(w.sum()))
    return w


def check_weight_summary(all_finite: bool, smallest: float, total: float) -> None:
    """Weights must be finite, non-negative, and not all zero."""
    if not all_finite or smallest < 0:
        raise ValueError("sample_weight must be finite and non-negative: fix those weights.")
    if total <= 0:
        raise ValueError("Every sample_weight is zero: give at least one positive weight.")


def numpy_input(estimator, X, *, reset: bool, min_samples: int = 1,
                missing: str = "error") -> np.ndarray:
    """Validate numpy/pandas/list input (scikit-learn's checks plus named columns);
    ``missing="omit"`` lets rows holding NaN through (infinities are still refused)."""
    names = None
    if hasattr(X, "dtypes") and hasattr(X, "columns"):
        check_columns(X.columns, X.dtypes)
        names = [str(c) for c in X.columns]
    else:
        ndim = np.ndim(X) if isinstance(X, (list, tuple)) else getattr(X, "ndim", 2)
        check_ndim(ndim)
    X = validate_data(
        estimator, X, dtype=[np.float64, np.float32], ensure_min_samples=min_samples,
        reset=reset, ensure_all_finite=False,
    )
    check_finite(X if missing == "error" else np.nan_to_num(X, nan=0.0, posinf=np.inf,
                                                            neginf=-np.inf), names)
    return X


def _frame_names(df):
    # like scikit-learn, only all-string column labels count as feature names
    names = list(df.columns)
    return np.asarray(names, dtype=object) if all(isinstance(c, str) for c in names) else None


def _dask_dataframe_to_array(df):
    check_columns(df.columns, df.dtypes)
    df = fixed_partitions(df)
    return df.astype("float64").to_dask_array(lengths=True), _frame_names(df)


def dask_frame_input(estimator, df):
    """A fitted estimator's dask DataFrame input, checked, as float64 columns."""
    check_columns(df.columns, df.dtypes)
    check_features(estimator, len(df.columns), _frame_names(df), reset=False)
    return df.astype("float64")


def dask_input(estimator, X, *, reset: bool, min_samples: int = 1):
    """Validate a dask array or DataFrame; returns a 2-D float dask array.

    Non-finite values cannot be found without reading the data; the kernels find them
    during the first pass and say in which rows.
    """
    names = None
    if hasattr(X, "columns"):
        X, names = _dask_dataframe_to_array(X)
    check_ndim(X.ndim)
    if not _numeric_kind(X.dtype):
        raise ValueError(f"dask array dtype {X.dtype} is not numeric: convert it to float.")
    if np.issubdtype(X.dtype, np.complexfloating):
        raise ValueError("Complex data not supported.")
    if X.dtype.kind != "f":
        X = X.astype(np.float64)
    if any(np.isnan(c) for c in X.chunks[0]):
        X = X.compute_chunk_sizes()
    n, d = X.shape
    if n < min_samples:
        raise ValueError(
            f"Found array with {n} sample(s) (shape={X.shape}) while a minimum of "
            f"{min_samples} is required."
        )
    if d < 1:
        raise ValueError(f"Found array with 0 feature(s) (shape={X.shape}).")
    check_features(estimator, d, names, reset)
    return X


def check_features(estimator, n_features: int, names, reset: bool) -> None:
    """Record (``reset``) or check the feature count and names, as scikit-learn does."""
    if reset:
        estimator.n_features_in_ = n_features
        if names is not None:
            estimator.feature_names_in_ = names
        elif hasattr(estimator, "feature_names_in_"):
            del estimator.feature_names_in_
        return
    if n_features != estimator.n_features_in_:
        raise ValueError(
            f"X has {n_features} features, but {type(estimator).__name__} is expecting "
            f"{estimator.n_features_in_} features as input."
        )
    fitted = getattr(estimator, "feature_names_in_", None)
    if fitted is not None and names is not None and list(fitted) != list(names):
        raise ValueError(
            "The feature names should match those that were passed during fit: "
            f"fitted with {list(fitted)}, got {list(names)}."
        )
    if fitted is not None and names is None:
        warnings.warn(
            f"X does not have valid feature names, but {type(estimator).__name__} was "
            "fitted with feature names",
            UserWarning,
        )


def dask_sample_weight(sample_weight, X):
    """Weights as a dask array chunked like the rows of ``X``."""
    import dask.array as da

    if is_dask(sample_weight):
        w = sample_weight
        if hasattr(w, "to_dask_array"):
            w = w.to_dask_array(lengths=True)
        if w.shape != (X.shape[0],):
            raise ValueError(
                f"sample_weight.shape == {w.shape}, expected {(X.shape[0],)}: give one "
                "weight per row."
            )
        w = w.astype(np.float64).rechunk((X.chunks[0],))
        import dask

        check_weight_summary(*dask.compute(da.isfinite(w).all(), w.min(), w.sum()))
        return w
    w = check_sample_weight(sample_weight, X.shape[0])
    return da.from_array(w, chunks=(X.chunks[0],))
