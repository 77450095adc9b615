"""Variational Bayesian Gaussian mixture: the M-step, the E-step's parameters, the bound.

Pure numpy (and ``scipy.special``), float64. Follows scikit-learn's
``sklearn/mixture/_bayesian_mixture.py`` formula for formula: a Dirichlet (process)
posterior over the weights, Gaussian-Wishart posteriors over means and precisions.

The E-step needs nothing new. scikit-learn's variational log-probability of row ``x``
under component ``k`` is the ordinary Gaussian log-density (with the precision Cholesky
factor of the normalised Wishart scale) plus a per-component constant,

    E[log pi_k] - d/2 log nu_k + (E[log |Lambda_k|] - d / beta_k) / 2     (*)

so the one-pass E-step kernel runs unchanged on a :class:`GMMParams` whose "weights"
are ``exp(*)`` (:func:`estep_params`); its statistics (``nk``, ``sx``, ``s2``) feed the
variational M-step (:func:`vb_update`) exactly as they feed EM's.

The lower bound needs ``sum_n sum_k r_nk log r_nk``. With ``log r_nk = L_nk - l_n``
(``L`` the scores above, ``l_n`` their log-sum-exp, the kernel's ``loglik``) and
``L_nk = W_k . T(x_n) + q(x_n)`` (:mod:`distgmm.numerics.features`), it is
``sum_k W_k . (sum_n r_nk T(x_n)) + sum_n q(x_n) - sum_n l_n``: the natural parameters
of the pass against the statistics the kernel already returns
(:func:`responsibility_entropy`). No extra statistic, no extra pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import betaln, digamma, gammaln

from .features import natural_params, upper_triangle
from .gaussian import log_det_cholesky, precision_cholesky, precisions_from_cholesky
from .mstep import estimate_gaussian_parameters
from .params import GMMParams
from .suffstats import SuffStats

# "weights" exp(*) sent to the kernel are floored at exp(-700) (a normal double): a
# component whose expected log weight is lower gets no responsibility either way, and
# log(0) = -inf would turn the bound's 0 * -inf into NaN
_LOG_WEIGHT_FLOOR = -700.0


@dataclass(frozen=True)
class Priors:
    """The priors of a fit, resolved (defaults taken from the data).

    Attributes
    ----------
    covariance_type : str
    weight_concentration_prior_type : {"dirichlet_process", "dirichlet_distribution"}
    weight_concentration_prior : float
    mean_precision_prior : float
    mean_prior : ndarray of shape (d,)
    degrees_of_freedom_prior : float
    covariance_prior : ndarray or float
        ``(d, d)`` for full and tied, ``(d,)`` for diag, a float for spherical.
    """

    covariance_type: str
    weight_concentration_prior_type: str
    weight_concentration_prior: float
    mean_precision_prior: float
    mean_prior: np.ndarray
    degrees_of_freedom_prior: float
    covariance_prior: np.ndarray | float


@dataclass(frozen=True, eq=False)
class VBParams:
    """The variational posterior (scikit-learn's fitted attributes, as one value).

    Attributes
    ----------
    weight_concentration : ndarray
        ``(K,)`` for ``dirichlet_distribution``; ``(2, K)`` for ``dirichlet_process``
        (scikit-learn's tuple of the Beta parameters, stacked).
    mean_precision : ndarray of shape (K,)
    means : ndarray of shape (K, d)
    degrees_of_freedom : ndarray of shape (K,)
        The same value repeated for ``tied`` (scikit-learn keeps a scalar).
    covariances : ndarray
        Shaped by covariance type (the Wishart scale divided by the degrees of freedom).
    precisions_cholesky : ndarray
    covariance_type : str
    weight_concentration_prior_type : str
    """

    weight_concentration: np.ndarray
    mean_precision: np.ndarray
    means: np.ndarray
    degrees_of_freedom: np.ndarray
    covariances: np.ndarray
    precisions_cholesky: np.ndarray
    covariance_type: str
    weight_concentration_prior_type: str

    @property
    def n_components(self) -> int:
        return self.means.shape[0]

    @property
    def n_features(self) -> int:
        return self.means.shape[1]


# --- the M-step: (nk, xk, sk) -> Wishart scale and degrees of freedom, by type ----------


def _wishart_full(nk, xk, sk, p: Priors, beta):
    diff = xk - p.mean_prior
    dof = p.degrees_of_freedom_prior + nk
    cov = (p.covariance_prior + nk[:, None, None] * sk
           + (nk * p.mean_precision_prior / beta)[:, None, None]
           * np.einsum("ki,kj->kij", diff, diff))
    return dof, cov / dof[:, None, None]


def _wishart_tied(nk, xk, sk, p: Priors, beta):
    k = nk.shape[0]
    dof = p.degrees_of_freedom_prior + nk.sum() / k
    diff = xk - p.mean_prior
    cov = (p.covariance_prior + sk * nk.sum() / k
           + p.mean_precision_prior / k * np.dot((nk / beta) * diff.T, diff))
    return np.full(k, dof), cov / dof


def _wishart_diag(nk, xk, sk, p: Priors, beta):
    dof = p.degrees_of_freedom_prior + nk
    diff = xk - p.mean_prior
    cov = p.covariance_prior + nk[:, None] * (
        sk + (p.mean_precision_prior / beta)[:, None] * np.square(diff))
    return dof, cov / dof[:, None]


def _wishart_spherical(nk, xk, sk, p: Priors, beta):
    dof = p.degrees_of_freedom_prior + nk
    diff = xk - p.mean_prior
    cov = p.covariance_prior + nk * (
        sk + p.mean_precision_prior / beta * np.mean(np.square(diff), 1))
    return dof, cov / dof


_WISHART = {
    "full": _wishart_full,
    "tied": _wishart_tied,
    "diag": _wishart_diag,
    "spherical": _wishart_spherical,
}


def _weight_concentration(nk: np.ndarray, p: Priors) -> np.ndarray:
    if p.weight_concentration_prior_type == "dirichlet_process":
        rest = np.hstack((np.cumsum(nk[::-1])[-2::-1], 0))
        return np.stack([1.0 + nk, p.weight_concentration_prior + rest])
    return p.weight_concentration_prior + nk


def vb_m_step(nk: np.ndarray, xk: np.ndarray, sk: np.ndarray, priors: Priors) -> VBParams:
    """The variational M-step from the Gaussian estimates of a set of responsibilities.

    Parameters
    ----------
    nk : ndarray of shape (K,)
        Responsibility mass (plus ``10 eps``, as scikit-learn's).
    xk : ndarray of shape (K, d)
        Responsibility-weighted means.
    sk : ndarray
        Responsibility-weighted covariances (``reg_covar`` added), shaped by type.
    priors : Priors

    Returns
    -------
    VBParams
    """
    ct = priors.covariance_type
    beta = priors.mean_precision_prior + nk
    means = (priors.mean_precision_prior * priors.mean_prior + nk[:, None] * xk) / beta[:, None]
    dof, cov = _WISHART[ct](nk, xk, sk, priors, beta)
    return VBParams(_weight_concentration(nk, priors), beta, means, dof, cov,
                    precision_cholesky(cov, ct), ct, priors.weight_concentration_prior_type)


# --- the E-step's parameters --------------------------------------------------------------


def expected_log_weights(vb: VBParams) -> np.ndarray:
    """``E[log pi_k]`` under the Dirichlet (process) posterior."""
    wc = vb.weight_concentration
    if vb.weight_concentration_prior_type == "dirichlet_process":
        digamma_sum = digamma(wc[0] + wc[1])
        digamma_b = digamma(wc[1])
        return (digamma(wc[0]) - digamma_sum
                + np.hstack((0, np.cumsum(digamma_b - digamma_sum)[:-1])))
    return digamma(wc) - digamma(np.sum(wc))


def log_prob_offsets(vb: VBParams) -> np.ndarray:
    """The per-component constant the variational log-probability adds to the Gaussian
    log-density: ``-d/2 log nu_k + (E[log |Lambda_k|] - d / beta_k) / 2``."""
    d = vb.n_features
    dof = vb.degrees_of_freedom
    log_lambda = d * np.log(2.0) + np.sum(
        digamma(0.5 * (dof - np.arange(0, d)[:, None])), 0)
    return -0.5 * d * np.log(dof) + 0.5 * (log_lambda - d / vb.mean_precision)


def estep_params(vb: VBParams) -> GMMParams:
    """What the E-step kernel is sent: the posterior's means and precision factors, and
    "weights" ``exp(E[log pi_k] + offset_k)`` (not normalised), so that the kernel's
    per-component scores are scikit-learn's variational weighted log-probabilities."""
    log_w = np.maximum(expected_log_weights(vb) + log_prob_offsets(vb), _LOG_WEIGHT_FLOOR)
    return GMMParams(np.exp(log_w), vb.means, vb.precisions_cholesky, vb.covariance_type,
                     vb.covariances)


def mixture_weights(vb: VBParams) -> np.ndarray:
    """scikit-learn's ``weights_``: the posterior's expected weights."""
    wc = vb.weight_concentration
    if vb.weight_concentration_prior_type == "dirichlet_process":
        total = wc[0] + wc[1]
        w = wc[0] / total * np.hstack((1, np.cumprod(wc[1][:-1] / total[:-1])))
        return w / np.sum(w)
    return wc / np.sum(wc)


def precisions(vb: VBParams) -> np.ndarray:
    """``precisions_``: ``P P^T`` of the precision Cholesky factors."""
    return precisions_from_cholesky(vb.precisions_cholesky, vb.covariance_type)


# --- the lower bound ----------------------------------------------------------------------


def responsibility_entropy(stats: SuffStats, sent: GMMParams) -> float:
    """``sum_n w_n sum_k r_nk log r_nk`` of the pass that made ``stats`` under ``sent``.

    From the statistics alone (module docstring): the natural parameters of ``sent``
    about the pass's centre against ``(sx, nk, s2)``, plus the ``tied`` shared term
    ``-tr(P^T S P) / 2``, minus the summed log-normalisers.
    """
    ct, d = stats.covariance_type, sent.n_features
    nat = natural_params(sent, stats.center)
    W = nat.W
    lin, b, quad = W[:, :d], W[:, d], W[:, d + 1 :]
    # a component with no mass adds nothing (0 * -inf would be NaN)
    has = stats.nk > 0
    total = float(np.sum(np.where(has, b, 0.0) * stats.nk) + np.einsum("ki,ki->", lin, stats.sx))
    if ct == "full":
        iu, ju = upper_triangle(d)
        total += float(np.einsum("kp,kp->", quad, stats.s2[:, iu, ju]))
    elif ct == "diag":
        total += float(np.einsum("kp,kp->", quad, stats.s2))
    elif ct == "spherical":
        total += float(quad[:, 0] @ stats.s2)
    else:  # tied: q(x) = -|P^T x|^2 / 2, summed with weight sum_k r_nk = 1
        tf = nat.tied_factor
        total -= 0.5 * float(np.einsum("ij,jl,il->", tf, stats.s2, tf))
    return total - stats.loglik


def _log_wishart_norm(dof, log_det_precisions_chol, n_features):
    # scikit-learn's, without its log(pi) term
    return -(dof * log_det_precisions_chol + dof * n_features * 0.5 * math.log(2.0)
             + np.sum(gammaln(0.5 * (dof - np.arange(n_features)[:, None])), 0))


def lower_bound(vb: VBParams, entropy: float) -> float:
    """scikit-learn's ``_compute_lower_bound`` (constant terms dropped, as there).

    Parameters
    ----------
    vb : VBParams
        The posterior after the M-step.
    entropy : float
        ``sum r log r`` of the E-step that led to it (:func:`responsibility_entropy`).
    """
    ct, d, k = vb.covariance_type, vb.n_features, vb.n_components
    dof = vb.degrees_of_freedom
    log_det = log_det_cholesky(vb.precisions_cholesky, ct, d) - 0.5 * d * np.log(dof)
    if ct == "tied":
        log_wishart = k * float(_log_wishart_norm(dof[0], log_det[0], d)[0])
    else:
        log_wishart = float(np.sum(_log_wishart_norm(dof, log_det, d)))
    wc = vb.weight_concentration
    if vb.weight_concentration_prior_type == "dirichlet_process":
        log_norm_weight = -float(np.sum(betaln(wc[0], wc[1])))
    else:
        log_norm_weight = float(gammaln(np.sum(wc)) - np.sum(gammaln(wc)))
    return (-entropy - log_wishart - log_norm_weight
            - 0.5 * d * float(np.sum(np.log(vb.mean_precision))))


def vb_update(stats: SuffStats, sent: GMMParams, priors: Priors,
              reg_covar: float) -> tuple[VBParams, float]:
    """One variational M-step and the lower bound, from one E-step pass's totals.

    Parameters
    ----------
    stats : SuffStats
        Merged statistics of the pass under ``sent``.
    sent : GMMParams
        What the pass was sent (:func:`estep_params` of the previous posterior).
    priors : Priors
    reg_covar : float

    Returns
    -------
    posterior : VBParams
    lower_bound : float
    """
    nk, xk, sk = estimate_gaussian_parameters(stats, reg_covar, check=False)
    vb = vb_m_step(nk, xk, sk, priors)
    return vb, lower_bound(vb, responsibility_entropy(stats, sent))


# --- the priors' defaults: the data's mean and covariance, from one pass ----------------


def ones_resp(xc: np.ndarray, row_start: int) -> np.ndarray:
    """Every row in one component (the data-moments pass of the priors' defaults)."""
    return np.ones((xc.shape[0], 1))


def data_moments(stats: SuffStats) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased (``ddof=1``) covariance of the data from a one-component pass.

    Parameters
    ----------
    stats : SuffStats
        Of :func:`ones_resp` over all rows, ``full`` (covariance matrix) or ``diag``
        (variances) second moments about one origin (``shift`` zero).

    Returns
    -------
    mean : ndarray of shape (d,)
    cov : ndarray of shape (d, d) (from ``full``) or (d,) (from ``diag``)
    """
    n = stats.nk[0]
    a = stats.sx[0]  # about the centre (the pass's shift is zero)
    mean_c = a / n
    if stats.covariance_type == "full":
        scatter = stats.s2[0] - np.outer(a, mean_c)
        scatter = 0.5 * (scatter + scatter.T)
    else:
        scatter = stats.s2[0] - a * mean_c
    return stats.center + mean_c, scatter / (n - 1)


def resolve_priors(covariance_type: str, weight_concentration_prior_type: str,
                   n_components: int, mean: np.ndarray, cov: np.ndarray, *,
                   weight_concentration_prior=None, mean_precision_prior=None,
                   mean_prior=None, degrees_of_freedom_prior=None,
                   covariance_prior=None) -> Priors:
    """The priors with scikit-learn's defaults for those not given.

    ``mean`` and ``cov`` are the data's (:func:`data_moments`): ``cov`` a matrix for
    full and tied, variances for diag and spherical. Given values are taken as they are
    (the estimator checked their shapes and signs).
    """
    d = mean.shape[0]
    if covariance_prior is None:
        covariance_prior = {"full": np.atleast_2d(cov), "tied": np.atleast_2d(cov),
                            "diag": cov, "spherical": float(np.mean(cov))}[covariance_type]
    elif covariance_type == "spherical":
        covariance_prior = float(covariance_prior)
    else:
        covariance_prior = np.asarray(covariance_prior, dtype=np.float64)
    return Priors(
        covariance_type, weight_concentration_prior_type,
        float(1.0 / n_components if weight_concentration_prior is None
              else weight_concentration_prior),
        float(1.0 if mean_precision_prior is None else mean_precision_prior),
        mean if mean_prior is None else np.asarray(mean_prior, dtype=np.float64).reshape(d),
        float(d if degrees_of_freedom_prior is None else degrees_of_freedom_prior),
        covariance_prior,
    )
