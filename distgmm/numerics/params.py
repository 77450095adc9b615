"""The fitted parameters of a Gaussian mixture, as one frozen value."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .gaussian import (
    covariances_from_cholesky,
    precision_cholesky,
    precisions_from_cholesky,
)


@dataclass(frozen=True, eq=False)
class GMMParams:
    """Weights, means and precision Cholesky factors of a mixture.

    Parameters
    ----------
    weights : ndarray of shape (n_components,)
    means : ndarray of shape (n_components, n_features)
    precisions_cholesky : ndarray
        Shaped by covariance type (see :mod:`distgmm.numerics.gaussian`).
    covariance_type : {"full", "tied", "diag", "spherical"}
    covariances : ndarray or None
        Kept when known (after an M-step); derived from the precisions otherwise.
    """

    weights: np.ndarray
    means: np.ndarray
    precisions_cholesky: np.ndarray
    covariance_type: str
    covariances: np.ndarray | None = None

    @classmethod
    def from_covariances(
        cls, weights: np.ndarray, means: np.ndarray, covariances: np.ndarray, covariance_type: str
    ) -> GMMParams:
        """Build from covariances (computes the precision Cholesky factors)."""
        return cls(
            np.asarray(weights, dtype=np.float64),
            np.asarray(means, dtype=np.float64),
            precision_cholesky(covariances, covariance_type),
            covariance_type,
            np.asarray(covariances, dtype=np.float64),
        )

    @property
    def n_components(self) -> int:
        return self.means.shape[0]

    @property
    def n_features(self) -> int:
        return self.means.shape[1]

    @property
    def center(self) -> np.ndarray:
        """Weighted mean of the means: the origin the kernels shift the data to."""
        w = self.weights / self.weights.sum()
        return w @ self.means

    def full_covariances(self) -> np.ndarray:
        """``covariances`` if known, else derived from the precision Cholesky factors."""
        if self.covariances is not None:
            return self.covariances
        return covariances_from_cholesky(self.precisions_cholesky, self.covariance_type)

    def precisions(self) -> np.ndarray:
        """Precision matrices ``P P^T``."""
        return precisions_from_cholesky(self.precisions_cholesky, self.covariance_type)


_COV_PARAMS = {
    "full": lambda k, d: k * d * (d + 1) / 2.0,
    "diag": lambda k, d: k * d,
    "tied": lambda k, d: d * (d + 1) / 2.0,
    "spherical": lambda k, d: k,
}


def n_parameters(n_components: int, n_features: int, covariance_type: str) -> int:
    """Number of free parameters of the mixture (as scikit-learn counts them)."""
    cov = _COV_PARAMS[covariance_type](n_components, n_features)
    return int(cov + n_features * n_components + n_components - 1)


def information_criteria(total_log_likelihood: float, n_samples: float,
                         n_components: int, n_features: int,
                         covariance_type: str) -> dict[str, float]:
    """BIC and AIC of a mixture from its total log-likelihood, as scikit-learn's.

    Parameters
    ----------
    total_log_likelihood : float
        Sum of the per-row log-likelihoods (weighted, with sample weights).
    n_samples : float
        Rows (the total weight, with sample weights).
    n_components, n_features : int
    covariance_type : str

    Returns
    -------
    dict
        ``{"bic": -2 log L + p log n, "aic": -2 log L + 2 p}`` (lower is better).
    """
    p = n_parameters(n_components, n_features, covariance_type)
    return {"bic": float(-2 * total_log_likelihood + p * np.log(n_samples)),
            "aic": float(-2 * total_log_likelihood + 2 * p)}
