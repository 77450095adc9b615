"""Lazy predict family on dask arrays: map_blocks with explicit meta and chunks."""

from __future__ import annotations

import numpy as np

from ..numerics.params import GMMParams
from ..numerics.predict import (
    predict_all_block,
    predict_block,
    predict_proba_block,
    score_samples_block,
)
from .blocks import one_feature_chunk


def _block_start(block_info):
    return block_info[0]["array-location"][0][0] if block_info else 0


def _predict(x, params, block_info=None):
    return predict_block(x, params, _block_start(block_info))


def _proba(x, params, block_info=None):
    return predict_proba_block(x, params, _block_start(block_info))


def _score(x, params, block_info=None):
    return score_samples_block(x, params, _block_start(block_info))


def _all(x, params, block_info=None):
    return predict_all_block(x, params, _block_start(block_info))


def _predict_part(part, params, omit=False):
    import pandas as pd

    X = np.ascontiguousarray(part.to_numpy(dtype=np.float64))
    labels = np.full(len(X), -1, dtype=np.intp)
    keep = np.isfinite(X).all(axis=1) if omit else slice(None)  # omitted rows: -1
    labels[keep] = predict_block(np.ascontiguousarray(X[keep]), params)
    return pd.Series(labels, index=part.index, name="label")


def predict_frame(df, params: GMMParams, omit: bool = False):
    """Lazy labels of a dask DataFrame's rows: a Series named ``label`` on its index
    (``omit``: rows holding NaN get -1, as with ``missing="omit"``)."""
    import pandas as pd
    from dask.dataframe.utils import make_meta

    meta = pd.Series([], dtype=np.intp, name="label", index=make_meta(df).index[:0])
    return df.map_partitions(_predict_part, params, omit, meta=meta)


def predict_dask(X, params: GMMParams):
    """Lazy labels, shape (n,), dtype intp."""
    X = one_feature_chunk(X)
    return X.map_blocks(
        _predict, params, drop_axis=1, chunks=(X.chunks[0],), dtype=np.intp,
        meta=np.empty((0,), dtype=np.intp),
    )


def predict_proba_dask(X, params: GMMParams):
    """Lazy responsibilities, shape (n, K)."""
    X = one_feature_chunk(X)
    return X.map_blocks(
        _proba, params, chunks=(X.chunks[0], (params.n_components,)), dtype=np.float64,
        meta=np.empty((0, 0), dtype=np.float64),
    )


def score_samples_dask(X, params: GMMParams):
    """Lazy per-row log-likelihood, shape (n,)."""
    X = one_feature_chunk(X)
    return X.map_blocks(
        _score, params, drop_axis=1, chunks=(X.chunks[0],), dtype=np.float64,
        meta=np.empty((0,), dtype=np.float64),
    )


def predict_all_dask(X, params: GMMParams):
    """Lazy labels (intp), per-row log-likelihood and responsibilities from one pass."""
    X = one_feature_chunk(X)
    k = params.n_components
    both = X.map_blocks(
        _all, params, chunks=(X.chunks[0], (2 + k,)), dtype=np.float64,
        meta=np.empty((0, 0), dtype=np.float64),
    )
    return both[:, 0].astype(np.intp), both[:, 1], both[:, 2:]
