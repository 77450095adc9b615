"""M-step: totals of sufficient statistics -> weights, means, covariances.

Pure numpy. Follows scikit-learn's ``_estimate_gaussian_parameters`` (``nk += 10 eps``,
``reg_covar`` on the diagonal) but recovers scatter about the new means from moments
taken about the pass's centre ``c`` (or, in initialisation passes, about each
component's own start). Data far from the origin costs no digits; what remains is a
relative error of about eps * (|m_k - c| / sigma_k)**2 for a component far from ``c``.
"""

from __future__ import annotations

import numpy as np

from .gaussian import COLLAPSE_HINT, SKLEARN_ILL_DEFINED, CollapseError
from .params import GMMParams
from .suffstats import SuffStats


def _sym(a: np.ndarray) -> np.ndarray:
    return 0.5 * (a + np.swapaxes(a, -1, -2))


def _cov_full(s: SuffStats, nk, delta, reg_covar):
    d_shift = delta - s.shift  # new mean minus the mean the moments are about
    a = s.sx - s.nk[:, None] * s.shift  # sum r (x - m_k)
    scatter = (
        s.s2
        - np.einsum("ki,kj->kij", d_shift, a)
        - np.einsum("ki,kj->kij", a, d_shift)
        + s.nk[:, None, None] * np.einsum("ki,kj->kij", d_shift, d_shift)
    )
    cov = _sym(scatter) / nk[:, None, None]
    idx = np.arange(cov.shape[1])
    cov[:, idx, idx] += reg_covar
    return cov


def _cov_tied(s: SuffStats, nk, delta, reg_covar):
    between = (
        np.einsum("ki,kj->ij", delta, s.sx)
        + np.einsum("ki,kj->ij", s.sx, delta)
        - np.einsum("k,ki,kj->ij", s.nk, delta, delta)
    )
    cov = _sym(s.s2 - between) / nk.sum()
    cov.flat[:: cov.shape[0] + 1] += reg_covar
    return cov


def _cov_diag(s: SuffStats, nk, delta, reg_covar):
    scatter = s.s2 - 2.0 * delta * s.sx + s.nk[:, None] * delta**2
    return scatter / nk[:, None] + reg_covar


def _cov_spherical(s: SuffStats, nk, delta, reg_covar):
    scatter = s.s2 - 2.0 * np.einsum("ki,ki->k", delta, s.sx) + s.nk * np.einsum(
        "ki,ki->k", delta, delta
    )
    return scatter / (nk * delta.shape[1]) + reg_covar


_COVARIANCE = {
    "full": _cov_full,
    "tied": _cov_tied,
    "diag": _cov_diag,
    "spherical": _cov_spherical,
}


# The E-step floors each responsibility at about 1e-304 (float32: 1e-35) of its row's
# largest (see suffstats._normalize_columns), so "none at all" means below this share
# of the total weight.
EMPTY_SHARE = 1e-30


def check_collapse(nk_raw: np.ndarray, total: float) -> None:
    """Raise if a component received no responsibility mass (to ``EMPTY_SHARE``)."""
    empty = np.flatnonzero(nk_raw <= EMPTY_SHARE * total)
    if empty.size:
        raise CollapseError(
            f"{SKLEARN_ILL_DEFINED} Component(s) {empty.tolist()} collapsed: no sample has "
            f"any responsibility for them. {COLLAPSE_HINT}"
        )


def estimate_gaussian_parameters(
    stats: SuffStats, reg_covar: float, *, check: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Totals -> ``(nk, means, covariances)`` as scikit-learn defines them.

    Parameters
    ----------
    stats : SuffStats
        Merged statistics of the whole data set.
    reg_covar : float
        Added to the diagonal of every covariance.
    check : bool, default=True
        Raise :class:`CollapseError` for a component without mass (EM cannot go on);
        the variational M-step passes ``False``: its priors keep such a component
        defined (it is switched off, not broken).

    Returns
    -------
    nk : ndarray of shape (n_components,)
        Weighted responsibility mass plus ``10 * eps``.
    means : ndarray of shape (n_components, n_features)
    covariances : ndarray
        Shaped by covariance type.
    """
    if check:
        check_collapse(stats.nk, stats.wsum)
    nk = stats.nk + 10 * np.finfo(np.float64).eps
    delta = stats.sx / nk[:, None]  # new means about the centre
    cov = _COVARIANCE[stats.covariance_type](stats, nk, delta, reg_covar)
    return nk, stats.center + delta, cov


def m_step(stats: SuffStats, reg_covar: float, weight_norm: float | None = None) -> GMMParams:
    """The M-step: new parameters from merged statistics.

    Parameters
    ----------
    stats : SuffStats
    reg_covar : float
    weight_norm : float, optional
        Divide ``nk`` by this to get the weights; default ``nk.sum()``. Initialisation
        passes the total sample weight, as scikit-learn divides by ``n_samples``.

    Returns
    -------
    GMMParams
    """
    nk, means, cov = estimate_gaussian_parameters(stats, reg_covar)
    weights = nk / (nk.sum() if weight_norm is None else weight_norm)
    return GMMParams.from_covariances(weights, means, cov, stats.covariance_type)
