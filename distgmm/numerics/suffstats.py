"""Partial sufficient statistics of one chunk: the fused E-step, and their merge.

Pure numpy; all accumulators are float64 whatever the input dtype.

Every chunk is first shifted by a centre ``c`` shared by all chunks of a pass (the
weighted mean of the current means). First moments are taken about ``c``; second
moments about the current component means for ``full`` and about ``c`` for the other
types. Statistics stay additive across chunks, and data far from the origin (an offset
of 1e6 with unit spread) loses no digits to cancellation.

==========  ===========================================  ================
type        ``s2``                                       shape
==========  ===========================================  ================
full        sum_i r_ik w_i (x_i - m_k)(x_i - m_k)^T      (K, d, d)
tied        sum_i w_i (x_i - c)(x_i - c)^T               (d, d)
diag        sum_i r_ik w_i (x_i - c)**2                  (K, d)
spherical   same as diag                                 (K, d)
==========  ===========================================  ================
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce

import numpy as np

from .gaussian import log_gaussian_prob, log_normalize_rows
from .params import GMMParams

TILE_ROWS = 4096


@dataclass(eq=False)
class SuffStats:
    """Additive statistics of a set of rows under fixed parameters.

    Attributes
    ----------
    covariance_type : str
    center : ndarray of shape (d,)
        Origin of first and second moments (identical in every chunk of a pass).
    shift : ndarray of shape (K, d)
        Component means about ``center`` used for ``full`` second moments.
    n_rows : int
    wsum : float
        Sum of sample weights (``n_rows`` when unweighted).
    loglik : float
        Sum of weighted per-row log-likelihoods.
    nk : ndarray of shape (K,)
        Sum of weighted responsibilities.
    sx : ndarray of shape (K, d)
        Sum of weighted responsibilities times ``x - center``.
    s2 : ndarray
        Second moments, see the module table.
    """

    covariance_type: str
    center: np.ndarray
    shift: np.ndarray
    n_rows: int
    wsum: float
    loglik: float
    nk: np.ndarray
    sx: np.ndarray
    s2: np.ndarray


def merge(a: SuffStats, b: SuffStats) -> SuffStats:
    """Add two statistics computed with the same parameters (associative)."""
    return SuffStats(
        a.covariance_type,
        a.center,
        a.shift,
        a.n_rows + b.n_rows,
        a.wsum + b.wsum,
        a.loglik + b.loglik,
        a.nk + b.nk,
        a.sx + b.sx,
        a.s2 + b.s2,
    )


def merge_all(items: list[SuffStats]) -> SuffStats:
    """Left-to-right merge of a list (fixed order, hence deterministic bits)."""
    return reduce(merge, items)


def _empty(covariance_type: str, center: np.ndarray, shift: np.ndarray) -> SuffStats:
    k, d = shift.shape
    s2_shape = {"full": (k, d, d), "tied": (d, d)}.get(covariance_type, (k, d))
    return SuffStats(
        covariance_type, center, shift, 0, 0.0, 0.0,
        np.zeros(k), np.zeros((k, d)), np.zeros(s2_shape),
    )


def _second_moment(xc, rw, w, shift, covariance_type):
    if covariance_type == "full":
        out = np.empty((shift.shape[0], xc.shape[1], xc.shape[1]))
        for k in range(shift.shape[0]):
            z = xc - shift[k]
            out[k] = (z * rw[:, k : k + 1]).T @ z
        return out
    if covariance_type == "tied":
        return (xc if w is None else xc * w[:, None]).T @ xc
    return rw.T @ (xc * xc)


def accumulate(
    xc: np.ndarray, resp: np.ndarray, w: np.ndarray | None, stats: SuffStats
) -> None:
    """Add rows ``xc`` (already shifted by ``stats.center``) with responsibilities ``resp``.

    Parameters
    ----------
    xc : ndarray of shape (n, d), float64
    resp : ndarray of shape (n, K)
        Responsibilities (rows sum to one), not yet weighted.
    w : ndarray of shape (n,) or None
        Sample weights.
    stats : SuffStats
        Updated in place.
    """
    rw = resp if w is None else resp * w[:, None]
    stats.n_rows += xc.shape[0]
    stats.wsum += float(xc.shape[0] if w is None else w.sum())
    stats.nk += rw.sum(axis=0)
    stats.sx += rw.T @ xc
    stats.s2 += _second_moment(xc, rw, w, stats.shift, stats.covariance_type)


def _tiles(n: int, tile_rows: int):
    for start in range(0, n, tile_rows):
        yield start, min(start + tile_rows, n)


def _weights_tile(w, a, b):
    return None if w is None else np.asarray(w[a:b], dtype=np.float64)


def raise_nonfinite(X: np.ndarray, row_start: int) -> None:
    """Raise a ValueError saying how many non-finite values a block holds, and where."""
    bad = ~np.isfinite(X)
    last = row_start + X.shape[0] - 1
    if bad.any():
        rows, cols = np.nonzero(bad)
        raise ValueError(
            f"Input contains NaN or infinity: {int(bad.sum())} non-finite value(s) in "
            f"{len(np.unique(rows))} row(s) between rows {row_start} and {last}, first at "
            f"row {row_start + int(rows[0])}, column {int(cols[0])}. Drop or impute those "
            "rows before fitting."
        )
    raise ValueError(
        f"The log-likelihood of rows {row_start}..{last} is not finite (values too large "
        "for float64 arithmetic). Scale the input data."
    )


def weighted_log_prob(xc: np.ndarray, params: GMMParams, center: np.ndarray) -> np.ndarray:
    """``log w_k + log N(x | mu_k, Sigma_k)`` for rows already shifted by ``center``."""
    lp = log_gaussian_prob(
        xc, params.means - center, params.precisions_cholesky, params.covariance_type
    )
    with np.errstate(divide="ignore"):
        return lp + np.log(params.weights)


def chunk_stats(
    X: np.ndarray,
    sample_weight: np.ndarray | None,
    row_start: int,
    params: GMMParams,
    tile_rows: int = TILE_ROWS,
) -> SuffStats:
    """Fused E-step over one chunk: responsibilities -> sufficient statistics.

    Parameters
    ----------
    X : ndarray of shape (n, d)
        Any float dtype; converted tile by tile to float64.
    sample_weight : ndarray of shape (n,) or None
    row_start : int
        Global index of the chunk's first row (for error messages).
    params : GMMParams
        Current parameters.
    tile_rows : int
        Rows per cache-sized tile.

    Returns
    -------
    SuffStats
    """
    center = params.center
    stats = _empty(params.covariance_type, center, params.means - center)
    for a, b in _tiles(X.shape[0], tile_rows):
        xc = np.asarray(X[a:b], dtype=np.float64) - center
        w = _weights_tile(sample_weight, a, b)
        lpn, resp = log_normalize_rows(weighted_log_prob(xc, params, center))
        ll = lpn.sum() if w is None else w @ lpn
        if not np.isfinite(ll):
            raise_nonfinite(X[a:b], row_start + a)
        stats.loglik += float(ll)
        accumulate(xc, resp, w, stats)
    return stats


def resp_stats(
    X: np.ndarray,
    sample_weight: np.ndarray | None,
    row_start: int,
    resp_fn,
    center: np.ndarray,
    shift_means: np.ndarray,
    covariance_type: str,
    tile_rows: int = TILE_ROWS,
) -> SuffStats:
    """Statistics for responsibilities given by ``resp_fn`` (initialisation passes).

    ``resp_fn(xc, row_start)`` returns the (n, K) responsibilities of the shifted tile
    ``xc`` whose first row has global index ``row_start``.
    """
    stats = _empty(covariance_type, center, shift_means - center)
    for a, b in _tiles(X.shape[0], tile_rows):
        xc = np.asarray(X[a:b], dtype=np.float64) - center
        if not np.isfinite(xc).all():
            raise_nonfinite(X[a:b], row_start + a)
        accumulate(xc, resp_fn(xc, row_start + a), _weights_tile(sample_weight, a, b), stats)
    return stats
