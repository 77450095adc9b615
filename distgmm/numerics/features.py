"""Sufficient-statistic features and natural parameters: the E-step as two GEMMs.

Pure numpy. A Gaussian component is an exponential family, so for rows ``x`` shifted
by a centre ``c`` shared by every chunk of a pass,

    log w_k + log N(x | m_k, S_k) = eta_k . T(x) + b_k + q(x)

with ``T(x)`` a short feature vector of the row, ``eta_k`` the natural parameters of
component ``k``, ``b_k`` a constant and ``q(x)`` a term shared by all components (only
``tied`` has one). A tile of rows becomes the feature-major matrix ``F`` (features x
rows: ``x``, a row of ones, the quadratic terms); then one GEMM ``W @ F`` scores every
row under every component (``b`` is the column of ``W`` against the ones), and one GEMM
``R @ F.T`` with the responsibilities ``R`` gives every component's sums of ``x``, of
``r`` and of the second moments at once. No loop runs over components or rows.

==========  ==============================  =====================  =====================
type        features ``T(x)``               rows of ``F``          ``eta_k``
==========  ==============================  =====================  =====================
full        x, x_i x_j (i <= j)             d + 1 + d(d+1)/2       L m, -L_ii/2, -L_ij
diag        x, x_j**2                       2 d + 1                L m, -diag(L)/2
spherical   x, |x|**2                       d + 2                  l m, -l/2
tied        x  (q(x) = -|P^T x|**2 / 2)     d + 1                  L m
==========  ==============================  =====================  =====================

``L`` is a precision matrix, ``m`` a mean about ``c``. Second moments come out about
``c``; the M-step recovers scatter about the new means from them.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .gaussian import log_det_cholesky
from .params import GMMParams

_LOG_2PI = np.log(2.0 * np.pi)


def n_feature_rows(covariance_type: str, n_features: int) -> int:
    """Rows of ``F``: ``d`` linear, one of ones, then the quadratic ones.

    The compiled kernel counts them too (``feature_rows`` in ``_estep.c``, exported as
    ``_estep.n_feature_rows``); :mod:`distgmm.numerics.suffstats` refuses, at import, a
    build whose count differs from this one.

    Parameters
    ----------
    covariance_type : {"full", "tied", "diag", "spherical"}
    n_features : int

    Returns
    -------
    int
        ``d + 1 + d(d+1)/2`` (full), ``d + 1`` (tied), ``2d + 1`` (diag), ``d + 2``
        (spherical).
    """
    d = n_features
    quad = {"full": d * (d + 1) // 2, "diag": d, "spherical": 1, "tied": 0}[covariance_type]
    return d + 1 + quad


@lru_cache(maxsize=64)
def _upper_offsets(d: int) -> tuple[int, ...]:
    """Start of row ``i``'s block ``x_i x_i, ..., x_i x_{d-1}`` among the quadratic rows."""
    return tuple(int(o) for o in np.concatenate([[0], np.cumsum(np.arange(d, 0, -1))]))


def fill_quadratic(F: np.ndarray, covariance_type: str, n_features: int) -> None:
    """Write the quadratic rows of ``F`` from its first ``n_features`` (linear) rows.

    Parameters
    ----------
    F : ndarray of shape (n_rows_of_F, t)
        Feature-major tile; rows ``0..d-1`` hold the shifted data, row ``d`` ones; the
        rows after it are written.
    covariance_type : {"full", "tied", "diag", "spherical"}
    n_features : int
    """
    d = n_features
    x, quad = F[:d], F[d + 1 :]
    if covariance_type == "full":
        offsets = _upper_offsets(d)
        for i in range(d):
            np.multiply(x[i], x[i:], out=quad[offsets[i] : offsets[i + 1]])
    elif covariance_type == "diag":
        np.multiply(x, x, out=quad)
    elif covariance_type == "spherical":
        np.einsum("ij,ij->j", x, x, out=quad[0])


@dataclass(frozen=True, eq=False)
class NaturalParams:
    """The scoring matrix of one pass.

    Attributes
    ----------
    W : ndarray of shape (K, n_rows_of_F)
        Natural parameters, one row per component; column ``d`` (against the row of
        ones) is ``b_k``: ``log w_k`` plus everything in the log-density that does not
        depend on ``x``.
    tied_factor : ndarray of shape (d, d) or None
        ``P^T`` for ``tied`` (the shared quadratic term is ``-|P^T x|**2 / 2``).
    """

    W: np.ndarray
    tied_factor: np.ndarray | None = None


_NATURAL: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_NATURAL_LOCK = threading.Lock()


def centered_natural_params(params: GMMParams) -> tuple[np.ndarray, NaturalParams]:
    """``params.center`` and :func:`natural_params` about it, computed once per
    ``params`` object.

    Every chunk of a pass is scored under the same (frozen) parameters, and a worker
    task visits many chunks: at 500-row chunks (K=8, d=16, full) the ~0.2 ms these take
    per call would be two thirds of the chunk's cost. Keyed by the object, held weakly,
    so the cache ends with the pass.
    """
    with _NATURAL_LOCK:
        hit = _NATURAL.get(params)
    if hit is None:
        center = params.center
        hit = center, natural_params(params, center)
        with _NATURAL_LOCK:
            _NATURAL[params] = hit
    return hit


def natural_params(params: GMMParams, center: np.ndarray) -> NaturalParams:
    """Natural parameters of ``params`` for data shifted by ``center``.

    Parameters
    ----------
    params : GMMParams
    center : ndarray of shape (d,)

    Returns
    -------
    NaturalParams
    """
    ct = params.covariance_type
    d = params.n_features
    pc = params.precisions_cholesky
    m = params.means - center
    with np.errstate(divide="ignore"):
        b = np.log(params.weights) + log_det_cholesky(pc, ct, d) - 0.5 * d * _LOG_2PI
    tied_factor = None
    if ct == "full":
        prec = np.einsum("kij,klj->kil", pc, pc)
        iu, ju = upper_triangle(d)
        quad = np.where(iu == ju, -0.5, -1.0) * prec[:, iu, ju]
        lin = np.einsum("kij,kj->ki", prec, m)
    elif ct == "tied":
        prec = pc @ pc.T
        lin = m @ prec
        quad = np.empty((m.shape[0], 0))
        tied_factor = np.ascontiguousarray(pc.T)
    elif ct == "diag":
        prec = pc**2
        lin = prec * m
        quad = -0.5 * prec
    else:  # spherical
        prec = pc**2
        lin = prec[:, None] * m
        quad = -0.5 * prec[:, None]
    b = b - 0.5 * np.einsum("ki,ki->k", lin, m)
    W = np.ascontiguousarray(np.concatenate([lin, b[:, None], quad], axis=1))
    return NaturalParams(W, tied_factor)


@lru_cache(maxsize=64)
def upper_triangle(d: int) -> tuple[np.ndarray, np.ndarray]:
    """``np.triu_indices(d)``, read-only and built once per ``d`` (used per chunk)."""
    iu, ju = np.triu_indices(d)
    iu.flags.writeable = ju.flags.writeable = False
    return iu, ju


@lru_cache(maxsize=64)
def symmetric_positions(d: int) -> np.ndarray:
    """Column of ``acc`` (:func:`unpack_moments`) holding each entry of a ``d x d``
    second moment, row-major: the upper triangle's packed moments, mirrored."""
    iu, ju = upper_triangle(d)
    pos = np.empty((d, d), dtype=np.intp)
    pos[iu, ju] = pos[ju, iu] = np.arange(iu.size)
    pos = (pos + d + 1).ravel()
    pos.flags.writeable = False
    return pos


def unpack_moments(
    acc: np.ndarray, covariance_type: str, n_features: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Split ``R @ F.T`` into responsibility sums, first and second moments.

    Parameters
    ----------
    acc : ndarray of shape (K, n_rows_of_F)
    covariance_type : str
    n_features : int

    Returns
    -------
    nk : ndarray of shape (K,)
    sx : ndarray of shape (K, d)
    s2 : ndarray
        ``(K, d, d)`` for full, ``(K, d)`` for diag, ``(K,)`` for spherical; ``None``
        for tied (its second moment does not depend on the responsibilities).
    """
    d = n_features
    sx = acc[:, :d].copy()
    nk = acc[:, d].copy()
    quad = acc[:, d + 1 :]
    if covariance_type == "full":  # one gather: a third of the time of two scatters
        s2 = acc.take(symmetric_positions(d), axis=1).reshape(acc.shape[0], d, d)
        return nk, sx, s2
    if covariance_type == "diag":
        return nk, sx, quad.copy()
    if covariance_type == "spherical":
        return nk, sx, quad[:, 0].copy()
    return nk, sx, None
