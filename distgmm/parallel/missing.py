"""Rows with missing values (NaN) left out of every statistic: ``missing="omit"``.

A pass selects each block's complete rows before the per-block function runs, so the
compiled kernel and the reduction tree are those of a fit without missing values; an
omitted row weighs exactly nothing. The predict family gives omitted rows label -1, NaN
probabilities and NaN log-likelihood.
"""

from __future__ import annotations

import numpy as np


def complete_rows(X) -> object:
    """Boolean mask (numpy or dask, like ``X``) of the rows without NaN."""
    if hasattr(X, "__dask_graph__"):
        import dask.array as da

        return ~da.isnan(X).any(axis=1)
    return ~np.isnan(X).any(axis=1)


def omit_missing_rows(X, w, row_start, fn, *args):
    """``fn(X, w, row_start, *args)`` on the block's rows that hold no NaN.

    Row keys of the random initialisers stay unique across blocks: the kept rows of a
    block are numbered from its ``row_start`` and never beyond its last row.
    """
    keep = ~np.isnan(X).any(axis=1)
    if keep.all():
        return fn(X, w, row_start, *args)
    return fn(X[keep], None if w is None else w[keep], row_start, *args)


def row_summary(X, w, row_start) -> np.ndarray:
    """``[rows, total weight, rows of positive weight]`` of a block."""
    n = X.shape[0]
    if w is None:
        return np.array([n, n, n], dtype=np.float64)
    return np.array([n, float(np.sum(w)), float(np.count_nonzero(w > 0))])


def first_row(X, w, row_start):
    """The block's first row, or None for an empty block."""
    return np.array(X[0], dtype=np.float64) if len(X) else None


def first_found(a, b):
    """Combine of :func:`first_row`: the leftmost row found."""
    return a if a is not None else b


def add(a, b):
    return a + b


def masked_result(apply, X, params, fill):
    """``apply(X, params)`` with missing rows scored as the first mean, then set to
    ``fill`` (-1 for labels, NaN otherwise); numpy or lazy dask like ``X``.

    Replacing a missing row by a finite one keeps the kernels' finiteness checks and
    the output's chunks; its result is thrown away.
    """
    keep = complete_rows(X)
    where = _where_of(X)
    filled = where(keep[:, None], X, np.asarray(params.means[0], dtype=X.dtype))
    out = apply(filled, params)
    mask = keep if out.ndim == 1 else keep[:, None]
    return where(mask, out, np.asarray(fill, dtype=out.dtype))


def _where_of(X):
    if hasattr(X, "__dask_graph__"):
        import dask.array as da

        return da.where
    return np.where


def fill_for(kind: str) -> float:
    """Value of an omitted row in each output: ``label`` -1, else NaN."""
    return -1 if kind == "label" else np.nan


def masked_all(predict_all, X, params):
    """Labels, log-likelihood and responsibilities from ``predict_all(X, params)`` (a
    numpy ``(n, 2 + K)`` block or the lazy triple of
    :func:`distgmm.parallel.predict.predict_all_dask`), omitted rows filled."""
    keep = complete_rows(X)
    where = _where_of(X)
    filled = where(keep[:, None], X, np.asarray(params.means[0], dtype=X.dtype))
    out = predict_all(filled, params)
    if isinstance(out, np.ndarray):
        out = (out[:, 0].astype(np.intp), out[:, 1], out[:, 2:])
    labels, loglik, proba = out
    return (where(keep, labels, np.asarray(-1, dtype=labels.dtype)),
            where(keep, loglik, np.nan), where(keep[:, None], proba, np.nan))
