"""``distgmm.BayesianGaussianMixture``: scikit-learn's variational Bayesian mixture on Dask.

The same engine as :class:`~distgmm.GaussianMixture`: its input checks, restarts in
shared passes and EM loop (:func:`distgmm.parallel.em.run_em`), the same E-step kernels
(the compiled one too) and the same tree reduction, one pass per iteration. Only what
the pass is sent (:func:`~distgmm.numerics.variational.estep_params`) and the M-step
with its lower bound (:func:`~distgmm.numerics.variational.vb_update`) differ.
"""

from __future__ import annotations

import difflib
from numbers import Real

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils._param_validation import (
    Interval,
    InvalidParameterError,
    StrOptions,
    make_constraint,
)
from sklearn.utils.validation import check_is_fitted

from .estimator import GaussianMixture, gmm_from_saved, restore_fit_summary
from .io.model import read_model, unreadable
from .numerics.finite import NonFiniteError
from .numerics.params import GMMParams
from .numerics.suffstats import merge, resp_stats
from .numerics.variational import (
    Priors,
    VBParams,
    data_moments,
    estep_params,
    mixture_weights,
    ones_resp,
    precisions,
    resolve_priors,
    vb_m_step,
    vb_update,
)
from .options import (
    CACHES,
    COMPUTE_DTYPES,
    COVARIANCE_TYPES,
    INIT_PARAMS,
    MISSING,
    WEIGHT_CONCENTRATION_PRIOR_TYPES,
)
from .parallel.blocks import Blocks
from .parallel.init import initial_params

_CHOICES = {
    "covariance_type": COVARIANCE_TYPES,
    "init_params": INIT_PARAMS,
    "weight_concentration_prior_type": WEIGHT_CONCENTRATION_PRIOR_TYPES,
    "cache": CACHES,
    "compute_dtype": COMPUTE_DTYPES,
    "missing": MISSING,
}

_TO_DO = {
    "n_components": "give an integer >= 1",
    "tol": "give a number >= 0",
    "reg_covar": "give a number >= 0",
    "max_iter": "give an integer >= 0",
    "n_init": "give an integer >= 1",
    "verbose_interval": "give an integer >= 1",
    "verbose": "give an integer >= 0",
    "warm_start": "give True or False",
    "random_state": "give an int, a numpy RandomState or None",
    "weight_concentration_prior": "give a number > 0, or None for 1 / n_components",
    "mean_precision_prior": "give a number > 0, or None for 1",
    "mean_prior": "give an array of n_features numbers, or None for the data's mean",
    "degrees_of_freedom_prior": "give a number > n_features - 1, or None for n_features",
    "covariance_prior": "give an array shaped by covariance_type (a number > 0 for "
                        "spherical), or None for the data's covariance",
}


def _hint(name: str, value) -> str:
    if name in _CHOICES:
        close = difflib.get_close_matches(str(value), _CHOICES[name], n=1)
        guess = f"; did you mean {close[0]!r}?" if close else "."
        return f"{name}={value!r} is not one of {_CHOICES[name]}{guess}"
    return f"{name}={value!r}: {_TO_DO[name]}."


def _check_mean_prior(mean_prior, d: int) -> None:
    m = np.asarray(mean_prior, dtype=np.float64)
    if m.shape != (d,) or not np.isfinite(m).all():
        raise ValueError(
            f"The parameter 'means' should have the shape of {(d,)}, but got {m.shape}: "
            f"mean_prior must be {d} finite numbers, one per feature (or None for the "
            "data's mean).")


def _check_covariance_prior(cp, ct: str, d: int) -> None:
    if ct == "spherical":
        if np.ndim(cp) != 0 or not float(cp) > 0 or not np.isfinite(cp):
            raise ValueError(
                f"covariance_prior={cp!r} for covariance_type='spherical' must be one "
                "number > 0 (a variance), or None for the data's mean variance.")
        return
    c = np.asarray(cp, dtype=np.float64)
    shape = (d,) if ct == "diag" else (d, d)
    if c.shape != shape:
        raise ValueError(
            f"The parameter '{ct} covariance_prior' should have the shape of {shape}, but "
            f"got {c.shape}: covariance_prior for covariance_type={ct!r} is shaped {shape}.")
    if ct == "diag":
        if not (np.isfinite(c).all() and np.all(c > 0)):
            raise ValueError(
                f"'{ct} covariance_prior' should be positive: covariance_prior for "
                "covariance_type='diag' holds variances, each > 0.")
        return
    if not (np.isfinite(c).all() and np.allclose(c, c.T)
            and np.linalg.eigvalsh(c).min() > 0):
        raise ValueError(
            f"'{ct} covariance_prior' should be symmetric, positive-definite: "
            f"covariance_prior for covariance_type={ct!r} must be a symmetric "
            "positive-definite covariance matrix.")


class BayesianGaussianMixture(GaussianMixture):
    """Variational Bayesian Gaussian mixture, one pass over (possibly distributed) data per
    iteration.

    Same parameters, attributes and results as
    :class:`sklearn.mixture.BayesianGaussianMixture` from the same start: start with more
    components than needed and let the Dirichlet (process) prior switch the extra ones
    off (their ``weights_`` near zero). Accepts what :class:`distgmm.GaussianMixture`
    accepts (numpy, pandas, dask arrays and DataFrames), without ``sample_weight``.

    Parameters
    ----------
    n_components : int, default=1
        Upper bound on the number of components.
    covariance_type : {"full", "tied", "diag", "spherical"}, default="full"
    tol : float, default=1e-3
        Convergence threshold on the change of the lower bound (the total, not per row,
        as in scikit-learn).
    reg_covar : float, default=1e-6
    max_iter : int, default=100
    n_init : int, default=1
        Initialisations, run side by side in shared passes; the best bound is kept.
    init_params : {"kmeans", "k-means++", "random", "random_from_data"}, default="kmeans"
    weight_concentration_prior_type : {"dirichlet_process", "dirichlet_distribution"}, \
default="dirichlet_process"
    weight_concentration_prior : float > 0 or None, default=None
        ``1 / n_components`` when None.
    mean_precision_prior : float > 0 or None, default=None
        1 when None.
    mean_prior : array-like of shape (n_features,) or None, default=None
        The data's mean when None.
    degrees_of_freedom_prior : float > n_features - 1 or None, default=None
        ``n_features`` when None.
    covariance_prior : float or array-like or None, default=None
        ``(d, d)`` for full and tied, ``(d,)`` for diag, a number for spherical; the
        data's covariance (``ddof=1``) when None. The defaults taken from the data
        cost one pass before the first iteration.
    random_state : int, RandomState instance or None, default=None
    warm_start : bool, default=False
    verbose : int, default=0
    verbose_interval : int, default=10
    cache : {"auto", "memory", "none"}, default="auto"
        As :class:`distgmm.GaussianMixture`'s.
    compute_dtype : {"float64", "float32"}, default="float64"
        As :class:`distgmm.GaussianMixture`'s.
    missing : {"error", "omit"}, default="error"
        As :class:`distgmm.GaussianMixture`'s: ``"omit"`` leaves rows holding NaN out of
        every statistic (label -1, NaN results).

    Attributes
    ----------
    weights_, means_, covariances_, precisions_, precisions_cholesky_ : ndarray
    weight_concentration_prior_, mean_precision_prior_, mean_prior_, \
degrees_of_freedom_prior_, covariance_prior_
        The priors used (defaults resolved).
    weight_concentration_ : ndarray or tuple of two ndarrays
        The Dirichlet parameters, or the Beta parameters for ``dirichlet_process``.
    mean_precision_ : ndarray of shape (n_components,)
    degrees_of_freedom_ : ndarray of shape (n_components,) (a float for ``tied``)
    converged_ : bool
    n_iter_ : int
    lower_bound_ : float
    lower_bounds_ : list of float
    n_features_in_ : int
    feature_names_in_ : ndarray
    timings_ : dict

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> from distgmm import BayesianGaussianMixture
    >>> rng = np.random.default_rng(0)
    >>> X = np.vstack([rng.normal(-5, 1, (500, 2)), rng.normal(5, 1, (500, 2))])
    >>> bgm = BayesianGaussianMixture(n_components=6, random_state=0).fit(
    ...     da.from_array(X, chunks=250))
    >>> int((bgm.weights_ > 1e-2).sum())
    2
    """

    _parameter_constraints: dict = {
        **{k: v for k, v in GaussianMixture._parameter_constraints.items()
           if k not in ("weights_init", "means_init", "precisions_init")},
        "weight_concentration_prior_type": [StrOptions(set(WEIGHT_CONCENTRATION_PRIOR_TYPES))],
        "weight_concentration_prior": [None, Interval(Real, 0.0, None, closed="neither")],
        "mean_precision_prior": [None, Interval(Real, 0.0, None, closed="neither")],
        "mean_prior": [None, "array-like"],
        "degrees_of_freedom_prior": [None, Interval(Real, 0.0, None, closed="neither")],
        "covariance_prior": [None, "array-like", Interval(Real, 0.0, None, closed="neither")],
    }

    def __init__(
        self,
        *,
        n_components: int = 1,
        covariance_type: str = "full",
        tol: float = 1e-3,
        reg_covar: float = 1e-6,
        max_iter: int = 100,
        n_init: int = 1,
        init_params: str = "kmeans",
        weight_concentration_prior_type: str = "dirichlet_process",
        weight_concentration_prior: float | None = None,
        mean_precision_prior: float | None = None,
        mean_prior=None,
        degrees_of_freedom_prior: float | None = None,
        covariance_prior=None,
        random_state=None,
        warm_start: bool = False,
        verbose: int = 0,
        verbose_interval: int = 10,
        cache: str = "auto",
        compute_dtype: str = "float64",
        missing: str = "error",
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weight_concentration_prior_type = weight_concentration_prior_type
        self.weight_concentration_prior = weight_concentration_prior
        self.mean_precision_prior = mean_precision_prior
        self.mean_prior = mean_prior
        self.degrees_of_freedom_prior = degrees_of_freedom_prior
        self.covariance_prior = covariance_prior
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.cache = cache
        self.missing = missing
        self.compute_dtype = compute_dtype

    # ------------------------------------------------------------------ checks
    def _validate_params(self) -> None:
        """scikit-learn's checks of the constructor parameters, then distgmm's advice."""
        try:
            BaseEstimator._validate_params(self)
        except InvalidParameterError as e:
            params, constraints = self.get_params(deep=False), self._parameter_constraints
            bad = next(name for name, value in params.items()
                       if name in constraints and not any(
                           make_constraint(c).is_satisfied_by(value) for c in constraints[name]))
            raise InvalidParameterError(f"{e} {_hint(bad, params[bad])}") from None

    def _check_parameters(self, n_features: int) -> None:
        """The priors' shapes and values (the rest is ``_validate_params``)."""
        dof = self.degrees_of_freedom_prior
        if dof is not None and not dof > n_features - 1.0:
            raise ValueError(
                f"The parameter 'degrees_of_freedom_prior' should be greater than "
                f"{n_features - 1}, but got {dof:.3f}: give a number > n_features - 1 = "
                f"{n_features - 1}, or None for n_features.")
        if self.mean_prior is not None:
            _check_mean_prior(self.mean_prior, n_features)
        if self.covariance_prior is not None:
            _check_covariance_prior(self.covariance_prior, self.covariance_type, n_features)

    def _check_data(self, blocks: Blocks) -> None:
        super()._check_data(blocks)
        self._set_priors(self._resolve_priors(blocks))

    def _resolve_priors(self, blocks: Blocks) -> Priors:
        """The priors, defaults from the data's mean and covariance (one pass, skipped
        when both are given)."""
        ct = self.covariance_type
        mean = cov = None
        if self.mean_prior is None or self.covariance_prior is None:
            origin = blocks.first_row()  # any origin near the data avoids cancellation
            stats = blocks.map_reduce(resp_stats, merge, ones_resp, origin, origin[None],
                                      "full" if ct in ("full", "tied") else "diag")
            mean, cov = data_moments(stats)
        return resolve_priors(
            ct, self.weight_concentration_prior_type, self.n_components,
            mean if mean is not None else np.asarray(self.mean_prior, dtype=np.float64),
            cov, weight_concentration_prior=self.weight_concentration_prior,
            mean_precision_prior=self.mean_precision_prior, mean_prior=self.mean_prior,
            degrees_of_freedom_prior=self.degrees_of_freedom_prior,
            covariance_prior=self.covariance_prior)

    def _set_priors(self, p: Priors) -> None:
        self.weight_concentration_prior_ = p.weight_concentration_prior
        self.mean_precision_prior_ = p.mean_precision_prior
        self.mean_prior_ = p.mean_prior
        self.degrees_of_freedom_prior_ = p.degrees_of_freedom_prior
        self.covariance_prior_ = p.covariance_prior

    def _priors(self) -> Priors:
        return Priors(self.covariance_type, self.weight_concentration_prior_type,
                      self.weight_concentration_prior_, self.mean_precision_prior_,
                      self.mean_prior_, self.degrees_of_freedom_prior_, self.covariance_prior_)

    # ---------------------------------------------------------------- fitting
    def fit(self, X, y=None, *, callback=None, checkpoint=None,
            feature_dim: str | None = None) -> BayesianGaussianMixture:
        """Estimate the variational posterior, one pass over the data per iteration.

        Parameters
        ----------
        X : array-like, DataFrame, dask array or dask DataFrame of shape (n_samples, n_features)
        y : ignored
        callback : callable, optional
            Called with a :class:`distgmm.parallel.em.IterationInfo` after every
            iteration.
        checkpoint : distgmm.io.checkpoint.Checkpoint, optional
            As :meth:`GaussianMixture.fit`'s.
        feature_dim : str, optional
            For xarray input: the dimension holding the features (as
            :meth:`GaussianMixture.fit`).

        Returns
        -------
        self
        """
        try:
            self._fit(X, None, callback, checkpoint, feature_dim)
        except NonFiniteError as e:  # name the column, as a DataFrame's names allow
            raise e.named(getattr(self, "feature_names_in_", None)) from None
        return self

    def fit_predict(self, X, y=None, *, callback=None, feature_dim: str | None = None):
        """Fit, then label ``X`` with the final posterior.

        Returns
        -------
        labels : ndarray (or lazy dask array for dask input) of shape (n_samples,)
        """
        return super().fit_predict(X, callback=callback, feature_dim=feature_dim)

    def _initial_estimates(self, blocks: Blocks, seed: int):
        """``(nk, xk, sk)`` of the initial responsibilities, as scikit-learn's
        ``_initialize`` computes them: distgmm's initialisers give weights ``nk / n``,
        means and covariances (``reg_covar`` added)."""
        base = initial_params(blocks, self.n_components, self.covariance_type,
                              self.reg_covar, self.init_params, seed)
        return base.weights * blocks.total_weight(), base.means, base.full_covariances()

    def _initial(self, blocks: Blocks, seed: int,
                 local_random_state: int | None = None) -> VBParams:
        nk, xk, sk = self._initial_estimates(blocks, seed)
        return vb_m_step(np.asarray(nk, dtype=np.float64), np.asarray(xk, dtype=np.float64),
                         np.asarray(sk, dtype=np.float64), self._priors())

    def _em_steps(self) -> dict:
        priors, reg_covar = self._priors(), self.reg_covar

        def update(stats, sent):
            return vb_update(stats, sent, priors, reg_covar)

        return {"send": estep_params, "update": update}

    def _warm_params(self) -> VBParams:
        return self.posterior()

    def _set_params(self, vb: VBParams) -> None:
        wc = vb.weight_concentration
        dp = self.weight_concentration_prior_type == "dirichlet_process"
        self.weight_concentration_ = (wc[0], wc[1]) if dp else wc
        self.mean_precision_ = vb.mean_precision
        self.means_ = vb.means
        self.degrees_of_freedom_ = (float(vb.degrees_of_freedom[0])
                                    if self.covariance_type == "tied" else vb.degrees_of_freedom)
        self.covariances_ = vb.covariances
        self.precisions_cholesky_ = vb.precisions_cholesky
        self.weights_ = mixture_weights(vb)
        self.precisions_ = precisions(vb)

    def posterior(self) -> VBParams:
        """The fitted variational posterior as one frozen value.

        Returns
        -------
        distgmm.numerics.variational.VBParams
        """
        check_is_fitted(self, "precisions_cholesky_")
        k = self.n_components
        wc = np.asarray(self.weight_concentration_, dtype=np.float64)
        return VBParams(wc, np.asarray(self.mean_precision_, dtype=np.float64), self.means_,
                        np.broadcast_to(np.asarray(self.degrees_of_freedom_, np.float64),
                                        (k,)).copy(),
                        self.covariances_, self.precisions_cholesky_, self.covariance_type,
                        self.weight_concentration_prior_type)

    def fitted_params(self) -> GMMParams:
        """What the kernels score rows with: the posterior's means and precisions, and
        per-component log weights ``E[log pi_k]`` plus the variational correction, so
        that ``predict``, ``predict_proba`` and ``score_samples`` are scikit-learn's.

        Returns
        -------
        GMMParams
            Its ``weights`` do not sum to one (see
            :func:`distgmm.numerics.variational.estep_params`).
        """
        return estep_params(self.posterior())

    def switched_off(self, threshold: float = 1e-3) -> np.ndarray:
        """Indices of the components the prior switched off (``weights_ < threshold``)."""
        check_is_fitted(self, "weights_")
        return np.flatnonzero(self.weights_ < threshold)

    # -------------------------------------------------------------- interop
    def to_sklearn(self):
        """An equivalent fitted :class:`sklearn.mixture.BayesianGaussianMixture`.

        Returns
        -------
        sklearn.mixture.BayesianGaussianMixture
            Same parameters, priors and fitted attributes; its predictions equal this
            model's.
        """
        from sklearn.mixture import BayesianGaussianMixture as SKBayesianGaussianMixture

        check_is_fitted(self, "precisions_cholesky_")
        names = SKBayesianGaussianMixture().get_params().keys()
        sk = SKBayesianGaussianMixture(
            **{k: v for k, v in self.get_params().items() if k in names})
        for attr in (*_PRIOR_ATTRS, *_POSTERIOR_ATTRS, "weights_", "precisions_",
                     "converged_", "n_iter_", "lower_bound_", "lower_bounds_",
                     "n_features_in_", "feature_names_in_"):
            if hasattr(self, attr):
                setattr(sk, attr, getattr(self, attr))
        return sk

    def bic(self, X) -> float:
        """Not defined for a variational mixture (scikit-learn has none either)."""
        raise AttributeError("BayesianGaussianMixture has no bic: compare lower_bound_ "
                             "instead, or fit distgmm.GaussianMixture for BIC.")

    def aic(self, X) -> float:
        """Not defined for a variational mixture (scikit-learn has none either)."""
        raise AttributeError("BayesianGaussianMixture has no aic: compare lower_bound_ "
                             "instead, or fit distgmm.GaussianMixture for AIC.")


_PRIOR_ATTRS = ("weight_concentration_prior_", "mean_precision_prior_", "mean_prior_",
                "degrees_of_freedom_prior_", "covariance_prior_")
_POSTERIOR_ATTRS = ("weight_concentration_", "mean_precision_", "means_",
                    "degrees_of_freedom_", "covariances_", "precisions_cholesky_")


def load_model(path: str, *, storage_options: dict | None = None):
    """Load any distgmm model: a :class:`GaussianMixture` or a
    :class:`BayesianGaussianMixture`, by the ``kind`` its ``model.json`` records.

    Parameters
    ----------
    path : str
        The model directory (or a run output directory holding ``model/``).
    storage_options : dict, optional

    Returns
    -------
    GaussianMixture or BayesianGaussianMixture
    """
    saved = read_model(path, storage_options=storage_options)
    if saved.kind != "bayes":
        return gmm_from_saved(saved, path)  # read and checked once
    known = BayesianGaussianMixture().get_params()
    model = BayesianGaussianMixture(**{k: v for k, v in saved.params.items() if k in known})
    try:
        model._validate_params()
        model._check_parameters(saved.n_features)
    except ValueError as e:
        raise unreadable(path, f"its parameters: {' '.join(str(e).split())}") from None
    priors = saved.bayes["priors"]
    model._set_priors(Priors(
        model.covariance_type, model.weight_concentration_prior_type,
        float(priors["weight_concentration_prior"]), float(priors["mean_precision_prior"]),
        saved.arrays["fitted_mean_prior"], float(priors["degrees_of_freedom_prior"]),
        saved.arrays["fitted_covariance_prior"] if model.covariance_type != "spherical"
        else float(priors["covariance_prior"])))
    model._set_params(VBParams(
        saved.arrays["weight_concentration"], saved.arrays["mean_precision"],
        saved.arrays["means"], saved.arrays["degrees_of_freedom"],
        saved.arrays["covariances"], saved.arrays["precisions_cholesky"],
        model.covariance_type, model.weight_concentration_prior_type))
    restore_fit_summary(model, saved)
    return model


__all__ = ["BayesianGaussianMixture", "load_model"]
