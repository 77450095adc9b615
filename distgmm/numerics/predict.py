"""Per-block scoring for the predict family (pure numpy, row-wise)."""

from __future__ import annotations

import numpy as np

from .finite import raise_nonfinite
from .gaussian import log_gaussian_prob, logsumexp_rows
from .params import GMMParams
from .suffstats import TILE_ROWS


def weighted_log_prob(xc: np.ndarray, params: GMMParams, center: np.ndarray) -> np.ndarray:
    """``log w_k + log N(x | mu_k, Sigma_k)`` for rows already shifted by ``center``."""
    lp = log_gaussian_prob(
        xc, params.means - center, params.precisions_cholesky, params.covariance_type
    )
    with np.errstate(divide="ignore"):
        return lp + np.log(params.weights)


def _log_resp_tiles(X: np.ndarray, params: GMMParams, row_start: int):
    center = params.center
    for a in range(0, X.shape[0], TILE_ROWS):
        tile = X[a : a + TILE_ROWS]
        lp = weighted_log_prob(np.asarray(tile, dtype=np.float64) - center, params, center)
        lpn = logsumexp_rows(lp)
        if not np.isfinite(lpn).all():
            raise_nonfinite(tile, row_start + a)
        yield lp, lpn


def score_samples_block(X: np.ndarray, params: GMMParams, row_start: int = 0) -> np.ndarray:
    """Per-row log-likelihood ``log p(x)``, shape (n,)."""
    out = [lpn for _, lpn in _log_resp_tiles(X, params, row_start)]
    return np.concatenate(out) if out else np.empty(0)


def predict_proba_block(X: np.ndarray, params: GMMParams, row_start: int = 0) -> np.ndarray:
    """Responsibilities, shape (n, K)."""
    out = [np.exp(lp - lpn[:, None]) for lp, lpn in _log_resp_tiles(X, params, row_start)]
    return np.concatenate(out) if out else np.empty((0, params.n_components))


def predict_block(X: np.ndarray, params: GMMParams, row_start: int = 0) -> np.ndarray:
    """Most probable component per row, shape (n,), dtype intp."""
    out = [lp.argmax(axis=1) for lp, _ in _log_resp_tiles(X, params, row_start)]
    return np.concatenate(out) if out else np.empty(0, dtype=np.intp)


def predict_all_block(X: np.ndarray, params: GMMParams, row_start: int = 0) -> np.ndarray:
    """Label, log-likelihood and responsibilities in one pass, shape (n, 2 + K).

    Column 0 is the label (as float), column 1 ``log p(x)``, columns 2.. the
    responsibilities.
    """
    out = [np.column_stack([lp.argmax(axis=1), lpn, np.exp(lp - lpn[:, None])])
           for lp, lpn in _log_resp_tiles(X, params, row_start)]
    return np.concatenate(out) if out else np.empty((0, 2 + params.n_components))
