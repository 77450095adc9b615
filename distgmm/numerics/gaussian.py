"""Gaussian log-densities through the Cholesky factor of the precision.

Pure numpy. Every function takes the covariance type and dispatches through a
dict to one small function per type, as scikit-learn's ``sklearn/mixture`` does.

Shapes by ``covariance_type`` (K components, d features):

==========  =======================  ==========================
type        covariances              precisions_cholesky
==========  =======================  ==========================
full        (K, d, d)                (K, d, d)
tied        (d, d)                   (d, d)
diag        (K, d)                   (K, d)
spherical   (K,)                     (K,)
==========  =======================  ==========================
"""

from __future__ import annotations

import numpy as np
from scipy import linalg

SKLEARN_ILL_DEFINED = (
    "Fitting the mixture model failed because some components have ill-defined "
    "empirical covariance (for instance caused by singleton or collapsed samples). "
    "Try to decrease the number of components, increase reg_covar, or scale the input "
    "data."
)
"""scikit-learn's sentence for a collapsed component, word for word (code that matches
scikit-learn's error keeps working); distgmm's messages start with it."""
COLLAPSE_HINT = (
    "Try fewer components (n_components) first; reg_covar is added to each variance in "
    "the data's own units, so scale features of very different sizes (e.g. with "
    "StandardScaler) before raising it."
)
"""distgmm's own advice, after scikit-learn's sentence."""
ILL_DEFINED_COVARIANCE = (
    f"{SKLEARN_ILL_DEFINED} A component's covariance is not positive definite: it "
    f"collapsed onto a single point or a lower-dimensional set. {COLLAPSE_HINT}"
)


class CollapseError(ValueError):
    """A component collapsed: an empty component or a covariance that is not
    positive definite. The message says what to try."""


def _chol_inv_t(cov: np.ndarray) -> np.ndarray:
    """Upper-triangular ``P`` with ``P @ P.T == inv(cov)`` (precision Cholesky)."""
    try:
        cov_chol = linalg.cholesky(cov, lower=True)
    except linalg.LinAlgError:
        raise CollapseError(ILL_DEFINED_COVARIANCE) from None
    eye = np.eye(cov.shape[0], dtype=np.float64)
    return linalg.solve_triangular(cov_chol, eye, lower=True).T


def _prec_chol_full(cov: np.ndarray) -> np.ndarray:
    return np.stack([_chol_inv_t(c) for c in cov])


def _prec_chol_vector(cov: np.ndarray) -> np.ndarray:
    if np.any(cov <= 0.0) or not np.all(np.isfinite(cov)):
        raise CollapseError(ILL_DEFINED_COVARIANCE)
    return 1.0 / np.sqrt(cov)


_PREC_CHOL = {
    "full": _prec_chol_full,
    "tied": _chol_inv_t,
    "diag": _prec_chol_vector,
    "spherical": _prec_chol_vector,
}


def precision_cholesky(covariances: np.ndarray, covariance_type: str) -> np.ndarray:
    """Cholesky factors of the precision matrices.

    Parameters
    ----------
    covariances : ndarray
        Covariances, shaped as in the module table.
    covariance_type : {"full", "tied", "diag", "spherical"}

    Returns
    -------
    ndarray
        Precision Cholesky factors, same shape as ``covariances``.

    Raises
    ------
    ValueError
        If a covariance is not positive definite (a collapsed component).
    """
    return _PREC_CHOL[covariance_type](np.asarray(covariances, dtype=np.float64))


def _chol_of_precision(prec: np.ndarray) -> np.ndarray:
    return linalg.cholesky(prec, lower=True)


_PREC_CHOL_FROM_PRECISIONS = {
    "full": lambda p: np.stack([_chol_of_precision(q) for q in p]),
    "tied": _chol_of_precision,
    "diag": np.sqrt,
    "spherical": np.sqrt,
}


def precision_cholesky_from_precisions(
    precisions: np.ndarray, covariance_type: str
) -> np.ndarray:
    """Cholesky factors of user-given precision matrices (``precisions_init``)."""
    return _PREC_CHOL_FROM_PRECISIONS[covariance_type](
        np.asarray(precisions, dtype=np.float64)
    )


_PRECISIONS = {
    "full": lambda pc: np.einsum("kij,klj->kil", pc, pc),
    "tied": lambda pc: pc @ pc.T,
    "diag": np.square,
    "spherical": np.square,
}


def precisions_from_cholesky(prec_chol: np.ndarray, covariance_type: str) -> np.ndarray:
    """Precision matrices ``P P^T`` from their Cholesky factors."""
    return _PRECISIONS[covariance_type](prec_chol)


def _covariance_from_prec_chol(pc: np.ndarray) -> np.ndarray:
    # cov = (P P^T)^-1 = P^-T P^-1
    inv = linalg.solve_triangular(pc, np.eye(pc.shape[0]), lower=False)
    return inv.T @ inv


_COVARIANCES = {
    "full": lambda pc: np.stack([_covariance_from_prec_chol(p) for p in pc]),
    "tied": _covariance_from_prec_chol,
    "diag": lambda pc: 1.0 / np.square(pc),
    "spherical": lambda pc: 1.0 / np.square(pc),
}


def covariances_from_cholesky(prec_chol: np.ndarray, covariance_type: str) -> np.ndarray:
    """Covariance matrices from precision Cholesky factors."""
    return _COVARIANCES[covariance_type](prec_chol)


_LOG_DET = {
    "full": lambda pc, d: np.log(np.diagonal(pc, axis1=1, axis2=2)).sum(axis=1),
    "tied": lambda pc, d: np.log(np.diag(pc)).sum(),
    "diag": lambda pc, d: np.log(pc).sum(axis=1),
    "spherical": lambda pc, d: d * np.log(pc),
}


def log_det_cholesky(prec_chol: np.ndarray, covariance_type: str, n_features: int):
    """Log-determinant of the precision Cholesky factor, per component."""
    return _LOG_DET[covariance_type](prec_chol, n_features)


# --- squared Mahalanobis distances, (n, K) --------------------------------------------
# X and means must be expressed about the same origin; callers pass data shifted by a
# centre close to the data so that no term cancels catastrophically.


def _maha_full(X: np.ndarray, means: np.ndarray, pc: np.ndarray) -> np.ndarray:
    n_components, n_features, _ = pc.shape
    # one GEMM for every component: X @ [P_1 ... P_K]
    p_cat = pc.transpose(1, 0, 2).reshape(n_features, n_components * n_features)
    y = (X @ p_cat).reshape(X.shape[0], n_components, n_features)
    y -= np.einsum("kd,kde->ke", means, pc)
    return np.einsum("nkd,nkd->nk", y, y)


def _maha_tied(X: np.ndarray, means: np.ndarray, pc: np.ndarray) -> np.ndarray:
    xp = X @ pc
    mp = means @ pc
    out = np.empty((X.shape[0], means.shape[0]))
    for k in range(means.shape[0]):
        y = xp - mp[k]
        out[:, k] = np.einsum("nd,nd->n", y, y)
    return out


def _maha_diag(X: np.ndarray, means: np.ndarray, pc: np.ndarray) -> np.ndarray:
    prec = pc**2
    return (
        np.sum(means**2 * prec, axis=1)
        - 2.0 * (X @ (means * prec).T)
        + (X**2) @ prec.T
    )


def _maha_spherical(X: np.ndarray, means: np.ndarray, pc: np.ndarray) -> np.ndarray:
    prec = pc**2
    return (
        np.sum(means**2, axis=1) * prec
        - 2.0 * (X @ (means.T * prec))
        + np.outer(np.einsum("nd,nd->n", X, X), prec)
    )


_MAHALANOBIS = {
    "full": _maha_full,
    "tied": _maha_tied,
    "diag": _maha_diag,
    "spherical": _maha_spherical,
}


def log_gaussian_prob(
    X: np.ndarray, means: np.ndarray, prec_chol: np.ndarray, covariance_type: str
) -> np.ndarray:
    """Log-density of every row under every component.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    means : ndarray of shape (n_components, n_features)
        Same origin as ``X``.
    prec_chol : ndarray
        Precision Cholesky factors, shaped as in the module table.
    covariance_type : {"full", "tied", "diag", "spherical"}

    Returns
    -------
    ndarray of shape (n_samples, n_components)
    """
    n_features = X.shape[1]
    log_det = log_det_cholesky(prec_chol, covariance_type, n_features)
    maha = _MAHALANOBIS[covariance_type](X, means, prec_chol)
    return -0.5 * (n_features * np.log(2 * np.pi) + maha) + log_det


def logsumexp_rows(a: np.ndarray) -> np.ndarray:
    """``log(sum(exp(a), axis=1))`` without overflow; rows of -inf give -inf."""
    amax = a.max(axis=1)
    safe = np.where(np.isfinite(amax), amax, 0.0)
    with np.errstate(divide="ignore"):
        return np.log(np.exp(a - safe[:, None]).sum(axis=1)) + safe
