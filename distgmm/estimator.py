"""``distgmm.GaussianMixture``: scikit-learn's GaussianMixture, fitted on Dask."""

from __future__ import annotations

import difflib
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import (
    Interval,
    InvalidParameterError,
    StrOptions,
    make_constraint,
)
from sklearn.utils.validation import check_is_fitted

from .io.gridded import result_for, rows_for
from .io.model import read_model, save_model, unreadable
from .numerics.finite import NonFiniteError
from .numerics.gaussian import (
    CollapseError,
    precision_cholesky_from_precisions,
)
from .numerics.params import GMMParams, information_criteria, n_parameters
from .numerics.predict import predict_block, predict_proba_block, score_samples_block
from .numerics.suffstats import chunk_stats, merge, warn_if_no_kernel
from .options import (
    CACHES,
    COMPUTE_DTYPES,
    COVARIANCE_TYPES,
    INIT_PARAMS,
    MISSING,
    covariance_shape,
)
from .parallel.blas import one_blas_thread
from .parallel.blocks import Blocks, dask_blocks, numpy_blocks
from .parallel.em import EMResult, FitState, IterationInfo, run_em
from .parallel.init import initial_params
from .parallel.inputs import (
    check_sample_weight,
    dask_frame_input,
    dask_input,
    dask_sample_weight,
    is_dask,
    numpy_input,
)
from .parallel.lockstep import run_lockstep
from .parallel.missing import fill_for, masked_result
from .parallel.outliers import OutlierMixin
from .parallel.predict import (
    predict_dask,
    predict_frame,
    predict_proba_dask,
    score_samples_dask,
)

_CHOICES = {
    "covariance_type": COVARIANCE_TYPES,
    "init_params": INIT_PARAMS,
    "cache": CACHES,
    "compute_dtype": COMPUTE_DTYPES,
    "missing": MISSING,
}
"""The string parameters and their choices, from :mod:`distgmm.options`."""

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
    "weights_init": "give an array or None",
    "means_init": "give an array or None",
    "precisions_init": "give an array or None",
}
"""What to do about a bad value of each other parameter (after scikit-learn's message)."""


def _parameter_hint(name: str, value) -> str:
    """distgmm's one-sentence advice about a bad parameter value."""
    if name in _CHOICES:
        choices = _CHOICES[name]
        close = difflib.get_close_matches(str(value), choices, n=1)
        guess = f"; did you mean {close[0]!r}?" if close else "."
        return f"{name}={value!r} is not one of {choices}{guess}"
    return f"{name}={value!r}: {_TO_DO[name]}."


# The checks of the initial parameters give scikit-learn's messages word for word (code
# matching scikit-learn's errors keeps working), then distgmm's advice.
_SHAPE_NAMES = {
    "full": "(n_components, n_features, n_features)",
    "tied": "(n_features, n_features)",
    "diag": "(n_components, n_features)",
    "spherical": "(n_components,)",
}


def _check_weights(weights, n_components: int) -> None:
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n_components,):
        raise ValueError(
            f"The parameter 'weights' should have the shape of {(n_components,)}, but got "
            f"{w.shape}: give weights_init one weight per component.")
    if not (np.all(w >= 0) and np.all(w <= 1)):
        # scikit-learn's sentence labels the smallest value "max" and the largest "min";
        # kept as it is, and the advice says which is which
        raise ValueError(
            "The parameter 'weights' should be in the range [0, 1], but got max value "
            f"{np.min(w):.5f}, min value {np.max(w):.5f}: weights_init must lie in [0, 1] "
            f"(its smallest is {np.min(w):.5g}, its largest {np.max(w):.5g}) and sum to 1.")
    if not np.isclose(w.sum(), 1.0):
        raise ValueError(
            "The parameter 'weights' should be normalized, but got sum(weights) = "
            f"{w.sum():.5f}: divide weights_init by its sum.")


def _check_means(means, n_components: int, n_features: int) -> None:
    m = np.asarray(means, dtype=np.float64)
    expected = (n_components, n_features)
    if m.shape != expected:
        raise ValueError(
            f"The parameter 'means' should have the shape of {expected}, but got "
            f"{m.shape}: means_init has shape {m.shape}; expected {expected}, one row per "
            "component and one column per feature.")


def _check_precisions(precisions, covariance_type: str, n_components: int,
                      n_features: int) -> None:
    ct = covariance_type
    p = np.asarray(precisions, dtype=np.float64)
    expected = covariance_shape(ct, n_components, n_features)
    if p.shape != expected:
        raise ValueError(
            f"The parameter '{ct} precision' should have the shape of {expected}, but got "
            f"{p.shape}: precisions_init for covariance_type={ct!r} is shaped "
            f"{_SHAPE_NAMES[ct]}.")
    if ct in ("diag", "spherical"):
        if not np.all(p > 0):
            raise ValueError(
                f"'{ct} precision' should be positive: precisions_init for "
                f"covariance_type={ct!r} holds inverse variances, each > 0.")
        return
    mats = p.reshape(-1, n_features, n_features)
    if not (np.allclose(mats, mats.transpose(0, 2, 1))
            and all(np.linalg.eigvalsh(m).min() > 0 for m in mats)):
        raise ValueError(
            f"'{ct} precision' should be symmetric, positive-definite: precisions_init for "
            f"covariance_type={ct!r} must be symmetric and positive-definite (the inverse "
            "of a covariance matrix).")


class GaussianMixture(OutlierMixin, DensityMixin, BaseEstimator):
    """Gaussian mixture fitted by EM, one pass over (possibly distributed) data per iteration.

    Same parameters, attributes and results as :class:`sklearn.mixture.GaussianMixture`
    for the same initial parameters. Accepts numpy arrays, pandas DataFrames, dask arrays
    and dask DataFrames; on dask input each EM iteration is one tree reduction of
    per-chunk sufficient statistics, computed by the active Dask scheduler (a
    ``distributed.Client`` if one is active, threads otherwise).

    Parameters
    ----------
    n_components : int, default=1
        Number of mixture components.
    covariance_type : {"full", "tied", "diag", "spherical"}, default="full"
    tol : float, default=1e-3
        Convergence threshold on the change of the lower bound (mean log-likelihood).
    reg_covar : float, default=1e-6
        Non-negative regularisation added to the diagonal of covariances.
    max_iter : int, default=100
        Number of EM iterations per initialisation.
    n_init : int, default=1
        Number of initialisations; the best lower bound is kept.
    init_params : {"kmeans", "k-means||", "k-means++", "random", "random_from_data"}, \
default="kmeans"
        ``"kmeans"`` clusters a random sample of rows (all rows when the data is small)
        with scikit-learn's KMeans: two passes over the data. ``"k-means||"`` is the
        distributed k-means|| seeding with a few distributed Lloyd passes (more passes).
    weights_init : array-like of shape (n_components,), default=None
    means_init : array-like of shape (n_components, n_features), default=None
    precisions_init : array-like, default=None
        Shaped by covariance type: (K, d, d), (d, d), (K, d) or (K,).
    random_state : int, RandomState instance or None, default=None
    warm_start : bool, default=False
        Start from the previous fit's parameters (one initialisation).
    verbose : int, default=0
    verbose_interval : int, default=10
    cache : {"auto", "memory", "none"}, default="auto"
        dask input only: ``"memory"`` persists the data on the cluster once,
        ``"none"`` re-reads the source every iteration (out-of-core), ``"auto"``
        persists when it fits in half the workers' memory.
    compute_dtype : {"float64", "float32"}, default="float64"
        Precision of the E-step arithmetic on each tile of rows (the two products and
        the exponentials). ``"float64"`` runs the compiled kernel; ``"float32"`` runs
        numpy tiles in float32, which is faster only where distgmm was installed
        without a C compiler. Statistics are always summed in float64 across tiles and
        chunks and the M-step is float64, but with ``"float32"`` results agree with
        scikit-learn to about 1e-5 rather than 1e-12.
    missing : {"error", "omit"}, default="error"
        Rows holding NaN: ``"error"`` refuses them; ``"omit"`` leaves them out of every
        statistic (as if their weight were 0), and the predict family gives them label
        -1, NaN probabilities and NaN log-likelihood.

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
    means_ : ndarray of shape (n_components, n_features)
    covariances_ : ndarray
    precisions_ : ndarray
    precisions_cholesky_ : ndarray
    converged_ : bool
    n_iter_ : int
    lower_bound_ : float
    lower_bounds_ : list of float
        Lower bound of every iteration of the best initialisation.
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Defined when X has column names.
    timings_ : dict
        Seconds spent in initialisation (``"init"``, all restarts) and in each EM
        iteration (``"iterations"``, every restart in order).
    n_omitted_ : int
        Rows the fit left out for missing values (0 unless ``missing="omit"``).
    gridded_features_ : dict
        Defined after a fit on xarray input: its ``feature_dim``, ``variables``,
        ``feature_coords`` and ``feature_names``; the predict family refuses xarray
        data whose features differ.

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> from distgmm import GaussianMixture
    >>> X = da.from_array(np.random.default_rng(0).normal(size=(1000, 2)), chunks=250)
    >>> gm = GaussianMixture(n_components=2, random_state=0).fit(X)
    >>> gm.predict(X).compute().shape
    (1000,)
    """

    # scikit-learn's developer API for third-party estimators: BaseEstimator's
    # _validate_params() checks these at the start of every fit and raises scikit-learn's
    # InvalidParameterError (a ValueError) with scikit-learn's wording; the choices are
    # distgmm.options'.
    _parameter_constraints: dict = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "covariance_type": [StrOptions(set(COVARIANCE_TYPES))],
        "tol": [Interval(Real, 0.0, None, closed="left")],
        "reg_covar": [Interval(Real, 0.0, None, closed="left")],
        "max_iter": [Interval(Integral, 0, None, closed="left")],
        "n_init": [Interval(Integral, 1, None, closed="left")],
        "init_params": [StrOptions(set(INIT_PARAMS))],
        "weights_init": ["array-like", None],
        "means_init": ["array-like", None],
        "precisions_init": ["array-like", None],
        "random_state": ["random_state"],
        "warm_start": ["boolean"],
        "verbose": ["verbose"],
        "verbose_interval": [Interval(Integral, 1, None, closed="left")],
        "cache": [StrOptions(set(CACHES))],
        "compute_dtype": [StrOptions(set(COMPUTE_DTYPES))],
        "missing": [StrOptions(set(MISSING))],
    }

    def __init__(
        self,
        n_components: int = 1,
        *,
        covariance_type: str = "full",
        tol: float = 1e-3,
        reg_covar: float = 1e-6,
        max_iter: int = 100,
        n_init: int = 1,
        init_params: str = "kmeans",
        weights_init=None,
        means_init=None,
        precisions_init=None,
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
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.cache = cache
        self.compute_dtype = compute_dtype
        self.missing = missing

    # ------------------------------------------------------------------ checks
    def _validate_params(self) -> None:
        """scikit-learn's checks of the constructor parameters, then distgmm's advice."""
        try:
            super()._validate_params()
        except InvalidParameterError as e:
            params, constraints = self.get_params(deep=False), self._parameter_constraints
            bad = next(name for name, value in params.items()  # scikit-learn's order
                       if name in constraints and not any(
                           make_constraint(c).is_satisfied_by(value) for c in constraints[name]))
            raise InvalidParameterError(f"{e} {_parameter_hint(bad, params[bad])}") from None

    def _check_parameters(self, n_features: int) -> None:
        """The initial parameters' shapes and values (the rest is ``_validate_params``)."""
        k = self.n_components
        if self.weights_init is not None:
            _check_weights(self.weights_init, k)
        if self.means_init is not None:
            _check_means(self.means_init, k, n_features)
        if self.precisions_init is not None:
            _check_precisions(self.precisions_init, self.covariance_type, k, n_features)

    def _blocks(self, X, sample_weight, *, reset: bool) -> Blocks:
        min_samples = 2 if reset else 1
        omit = self.missing == "omit"
        if is_dask(X):
            X = dask_input(self, X, reset=reset, min_samples=min_samples)
            w = None if sample_weight is None else dask_sample_weight(sample_weight, X)
            return dask_blocks(X, w, cache=self.cache, omit_missing=omit)
        X = numpy_input(self, X, reset=reset, min_samples=min_samples, missing=self.missing)
        w = None if sample_weight is None else check_sample_weight(sample_weight, X.shape[0])
        return numpy_blocks(X, w, omit_missing=omit)

    # ---------------------------------------------------------------- fitting
    def _initial(self, blocks: Blocks, seed: int,
                 local_random_state: int | None = None) -> GMMParams:
        ct = self.covariance_type
        given = [self.weights_init, self.means_init, self.precisions_init]
        if all(v is not None for v in given):
            base = None
        else:
            base = initial_params(blocks, self.n_components, ct, self.reg_covar,
                                  self.init_params, seed, local_random_state)
        weights = base.weights if self.weights_init is None else self.weights_init
        means = base.means if self.means_init is None else self.means_init
        if self.precisions_init is None:
            pc, cov = base.precisions_cholesky, base.covariances
        else:
            pc = precision_cholesky_from_precisions(self.precisions_init, ct)
            cov = None
        return GMMParams(
            np.asarray(weights, dtype=np.float64), np.asarray(means, dtype=np.float64),
            pc, ct, cov,
        )

    def fit(self, X, y=None, sample_weight=None, *, callback=None,
            checkpoint=None, feature_dim: str | None = None) -> GaussianMixture:
        """Estimate the parameters with EM.

        Parameters
        ----------
        X : array-like, DataFrame, dask array or dask DataFrame of shape (n_samples, n_features)
            Or an ``xarray.DataArray`` / ``xarray.Dataset``: rows are all dimensions
            but ``feature_dim`` stacked (lazily), features the positions along it and/or
            a Dataset's variables (:func:`distgmm.io.gridded.stack`).
        y : ignored
        sample_weight : array-like of shape (n_samples,), default=None
            Per-row weights (a row of weight 2 counts as two identical rows).
        callback : callable, optional
            Called with a :class:`distgmm.parallel.em.IterationInfo` (initialisation
            index, iteration, lower bound, change, seconds) after every EM iteration.
        checkpoint : distgmm.io.checkpoint.Checkpoint, optional
            Save the EM state after every iteration; if it already holds a state for
            the same settings and input, continue from there. The result equals an
            uninterrupted fit's.
        feature_dim : str, optional
            xarray input: the feature dimension (a DataArray's default: its last; a
            Dataset's default: none, each variable one feature). The model remembers
            it, the variables and the feature coordinates (``gridded_features_``).

        Returns
        -------
        self
        """
        try:
            self._fit(X, sample_weight, callback, checkpoint, feature_dim)
        except NonFiniteError as e:  # name the column, as a DataFrame's names allow
            raise e.named(getattr(self, "feature_names_in_", None)) from None
        return self

    def fit_predict(self, X, y=None, sample_weight=None, *, callback=None,
                    feature_dim: str | None = None):
        """Fit, then label ``X`` with the final parameters.

        Returns
        -------
        labels : ndarray (or lazy dask array for dask input) of shape (n_samples,)
            A lazy DataArray on the input's grid for xarray input.
        """
        grid = []
        blocks = self._fit(X, sample_weight, callback, None, feature_dim, grid)
        labels = self._predict_blocks(blocks, predict_block, predict_dask)
        return result_for(labels, grid[0], "label")

    @one_blas_thread()  # the driver's M-steps and in-process tasks: see parallel/blas.py
    def _fit(self, X, sample_weight, callback=None, checkpoint=None, feature_dim=None,
             grid_out: list | None = None) -> Blocks:
        self._validate_params()
        self.forget_outlier_threshold()  # a threshold of the old parameters means nothing
        # before any restart's thread starts: a thread's catch_warnings would hide it
        warn_if_no_kernel(self.compute_dtype)
        X, grid = rows_for(self, X, sample_weight, feature_dim, reset=not self._warm())
        if grid_out is not None:
            grid_out.append(grid)
        blocks = self._blocks(X, sample_weight, reset=not self._warm())
        self._check_data(blocks)
        restarts = _Restarts(self, callback, checkpoint)
        tasks = restarts.tasks()
        if len(tasks) == 1:
            results = [tasks[0](blocks)]
        else:  # all restarts share every pass over the data
            outcomes, _ = run_lockstep(blocks, tasks)
            results = [o.value for o in outcomes]
        restarts.finish(results)
        return blocks

    def _check_data(self, blocks: Blocks) -> None:
        n = blocks.n_positive_weight_rows()
        self.n_omitted_ = blocks.n_omitted()
        if blocks.omit_missing and n < self.n_components:
            raise ValueError(
                f"After leaving out the {self.n_omitted_} of {blocks.n_samples} rows that "
                f"hold missing values, {n} rows remain (with positive weight), fewer than "
                f"n_components={self.n_components}: use fewer components or input with "
                "fewer missing values.")
        if n < self.n_components:
            raise ValueError(
                f"Expected n_samples >= n_components but got n_components = "
                f"{self.n_components}, n_samples = {n} (rows with positive weight): use "
                "fewer components or more data."
            )
        self._check_parameters(blocks.n_features)

    def _keep_best(self, results: list[EMResult]) -> None:
        """Keep the best restart (scikit-learn's rule: the first of the best bounds)."""
        best = None
        for result in results:
            if best is None or best.lower_bound == -np.inf or result.lower_bound > best.lower_bound:
                best = result
        if not best.converged and self.max_iter > 0:
            warnings.warn(
                "Best performing initialization did not converge. Try different init "
                "parameters, or increase max_iter, tol, or check for degenerate data.",
                ConvergenceWarning,
            )
        self._set_params(best.params)
        self.converged_ = best.converged
        self.n_iter_ = best.n_iter
        self.lower_bound_ = best.lower_bound if self.max_iter > 0 else -np.inf
        self.lower_bounds_ = best.lower_bounds

    def _warm(self) -> bool:
        return bool(self.warm_start) and hasattr(self, "converged_")

    def _progress(self, info: IterationInfo) -> None:
        if self.verbose and info.n_iter % self.verbose_interval == 0:
            if self.verbose == 1:
                print(f"  Iteration {info.n_iter}")
            else:
                print(f"  Iteration {info.n_iter}\t time lapse {info.seconds:.5f}s\t "
                      f"ll change {info.change:.5f}")

    def _set_params(self, params: GMMParams) -> None:
        self.weights_ = params.weights
        self.means_ = params.means
        self.precisions_cholesky_ = params.precisions_cholesky
        self.covariances_ = params.full_covariances()
        self.precisions_ = params.precisions()

    def fitted_params(self) -> GMMParams:
        """The fitted mixture as the frozen value the numerical kernels take.

        Returns
        -------
        GMMParams
            Weights, means, precision Cholesky factors and covariances.
        """
        check_is_fitted(self, "precisions_cholesky_")
        return GMMParams(
            self.weights_, self.means_, self.precisions_cholesky_, self.covariance_type,
            getattr(self, "covariances_", None),
        )

    def _warm_params(self):
        """Where a warm start begins (another estimator's EM state: its own value)."""
        return self.fitted_params()

    def _em_steps(self) -> dict:
        """``send``/``update`` for :func:`~distgmm.parallel.em.run_em`: none for EM."""
        return {}

    # ---------------------------------------------------------------- predict
    def _predict_blocks(self, blocks: Blocks, numpy_fn, dask_fn):
        params = self.fitted_params()
        fn = dask_fn if blocks.is_dask else numpy_fn
        if self.missing == "omit":
            out = masked_result(fn, blocks.X, params, _FILLS[numpy_fn])
        else:
            out = fn(blocks.X, params)
        if blocks.source_chunks is not None:  # packed in memory: the input's chunks back
            out = out.rechunk({0: blocks.source_chunks})
        return out

    def _apply(self, X, numpy_fn, dask_fn, feature_dim=None, kind=None):
        params = self.fitted_params()
        X, grid = rows_for(self, X, None, feature_dim, reset=False)
        if grid is not None and kind is not None:  # a lazy DataArray on the input's grid
            return result_for(self._apply(X, numpy_fn, dask_fn), grid, kind)
        if is_dask(X):
            fn, X = dask_fn, dask_input(self, X, reset=False)
        else:
            fn, X = numpy_fn, numpy_input(self, X, reset=False, missing=self.missing)
        if self.missing == "omit":
            return masked_result(fn, X, params, _FILLS[numpy_fn])
        return fn(X, params)

    def predict(self, X, *, feature_dim: str | None = None):
        """Most probable component of each row.

        Returns
        -------
        labels : ndarray of shape (n_samples,), or a lazy dask array for dask input
            For a dask DataFrame, a lazy dask Series named ``label`` on its index; for
            xarray input, a lazy DataArray with the input's sample dims and coordinates.
        """
        if is_dask(X) and hasattr(X, "columns"):
            return predict_frame(dask_frame_input(self, X), self.fitted_params(),
                                 omit=self.missing == "omit")
        return self._apply(X, predict_block, predict_dask, feature_dim, "label")

    def predict_proba(self, X, *, feature_dim: str | None = None):
        """Posterior probability of each component for each row.

        Returns
        -------
        resp : ndarray of shape (n_samples, n_components), or a lazy dask array
            For xarray input, a lazy DataArray (sample dims, ``component``).
        """
        return self._apply(X, predict_proba_block, predict_proba_dask, feature_dim,
                           "probabilities")

    def score_samples(self, X, *, feature_dim: str | None = None):
        """Log-likelihood of each row.

        Returns
        -------
        log_prob : ndarray of shape (n_samples,), or a lazy dask array
            For xarray input, a lazy DataArray with the input's sample dims.
        """
        return self._apply(X, score_samples_block, score_samples_dask, feature_dim,
                           "log_likelihood")

    def _total_log_likelihood(self, X) -> tuple[float, int]:
        s = self._apply(X, score_samples_block, score_samples_dask)  # rows, even for xarray
        omit = self.missing == "omit"  # omitted rows (NaN) count for nothing
        if is_dask(s):
            import dask
            import dask.array as da

            total, n = dask.compute(da.nansum(s), (~da.isnan(s)).sum()) if omit else \
                dask.compute(s.sum(), s.shape[0])
            return float(total), int(n)
        if omit:
            return float(np.nansum(s)), int((~np.isnan(s)).sum())
        return float(s.sum()), len(s)

    def score(self, X, y=None) -> float:
        """Mean per-row log-likelihood of ``X`` (computed eagerly for dask input)."""
        total, n = self._total_log_likelihood(X)
        return total / n

    def _n_parameters(self) -> int:  # scikit-learn's private name, kept for its tests
        return n_parameters(self.n_components, self.means_.shape[1], self.covariance_type)

    def _criteria(self, X) -> dict[str, float]:
        total, n = self._total_log_likelihood(X)
        return information_criteria(total, n, self.n_components, self.means_.shape[1],
                                    self.covariance_type)

    def bic(self, X) -> float:
        """Bayesian information criterion on ``X`` (lower is better)."""
        return self._criteria(X)["bic"]

    def aic(self, X) -> float:
        """Akaike information criterion on ``X`` (lower is better)."""
        return self._criteria(X)["aic"]

    # ---------------------------------------------------------- persistence
    def save(self, path: str, *, metrics: dict | None = None, overwrite: bool = False,
             storage_options: dict | None = None) -> str:
        """Save to a directory of ``model.json`` and ``.npy`` files (no pickle).

        Written to a staging directory and moved into place: ``path`` holds a complete
        model or nothing. Load with :func:`distgmm.load_model`.
        """
        return save_model(self, path, metrics=metrics, overwrite=overwrite,
                          storage_options=storage_options)

    def to_sklearn(self):
        """An equivalent fitted :class:`sklearn.mixture.GaussianMixture`.

        Returns
        -------
        sklearn.mixture.GaussianMixture
            Same parameters and fitted attributes; its predictions equal this model's.
        """
        from sklearn.mixture import GaussianMixture as SKGaussianMixture

        check_is_fitted(self, "precisions_cholesky_")
        names = SKGaussianMixture().get_params().keys()
        sk = SKGaussianMixture(**{k: v for k, v in self.get_params().items() if k in names})
        for attr in ("weights_", "means_", "covariances_", "precisions_",
                     "precisions_cholesky_", "converged_", "n_iter_", "lower_bound_",
                     "lower_bounds_", "n_features_in_", "feature_names_in_"):
            if hasattr(self, attr):
                setattr(sk, attr, getattr(self, attr))
        return sk

    def sample(self, n_samples: int = 1):
        """Draw samples from the fitted mixture (numpy, as scikit-learn does).

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        y : ndarray of shape (n_samples,)
            Component of each sample.
        """
        check_is_fitted(self, "precisions_cholesky_")
        if n_samples < 1:
            raise ValueError(
                f"Invalid value for 'n_samples': {n_samples}. The sampling requires at "
                "least one sample."
            )
        _, n_features = self.means_.shape
        rng = check_random_state(self.random_state)
        counts = rng.multinomial(n_samples, self.weights_)
        ct = self.covariance_type
        if ct == "full":
            parts = [rng.multivariate_normal(m, c, int(s))
                     for m, c, s in zip(self.means_, self.covariances_, counts)]
        elif ct == "tied":
            parts = [rng.multivariate_normal(m, self.covariances_, int(s))
                     for m, s in zip(self.means_, counts)]
        else:
            parts = [m + rng.standard_normal(size=(s, n_features)) * np.sqrt(c)
                     for m, c, s in zip(self.means_, self.covariances_, counts)]
        y = np.concatenate([np.full(s, j, dtype=int) for j, s in enumerate(counts)])
        return np.vstack(parts), y


_FILLS = {predict_block: fill_for("label"), predict_proba_block: fill_for("probabilities"),
          score_samples_block: fill_for("log_likelihood")}
"""What an omitted row gets from each of the predict family."""


class _Restarts:
    """The restarts of one estimator's fit, each a task ``run(init, data) -> EMResult``.

    A restart initialises (or resumes from ``checkpoint``, or continues a warm start),
    then runs EM. The tasks may run in threads side by side (in lockstep); the shared
    state -- timings, the checkpoint -- is updated under a lock.
    """

    def __init__(self, model: GaussianMixture, callback=None, checkpoint=None):
        self.model, self.callback, self.checkpoint = model, callback, checkpoint
        self.warm = model._warm()
        n_init = 1 if self.warm else model.n_init
        rng = check_random_state(model.random_state)
        seeds = [int(rng.randint(np.iinfo(np.int32).max)) for _ in range(n_init)]
        state = checkpoint.restore() if checkpoint is not None else None
        self.state = FitState(seeds, [None] * n_init) if state is None else state
        self.init_seconds = 0.0
        self.iteration_seconds: list[list[float]] = [[] for _ in range(n_init)]
        self.lock = threading.Lock()
        model.timings_ = {"init": 0.0, "iterations": []}  # a failed fit leaves no stale ones

    def tasks(self) -> list[Callable[[Blocks], EMResult]]:
        """One ``task(data) -> EMResult`` per restart."""
        return [partial(self.run, init) for init in range(len(self.state.seeds))]

    def run(self, init: int, data: Blocks) -> EMResult:
        """Restart ``init``: its start, then EM to convergence or ``max_iter``."""
        m = self.model
        t0 = time.perf_counter()
        params, lower_bound, resume = self._start(init, data)
        with self.lock:
            self.init_seconds += time.perf_counter() - t0
        save = None if self.checkpoint is None else partial(self._save, init)
        try:
            result = run_em(
                data, params, tol=m.tol, max_iter=m.max_iter, reg_covar=m.reg_covar,
                compute_dtype=m.compute_dtype, lower_bound=lower_bound,
                callback=partial(self._iterated, init), resume=resume, on_result=save,
                **m._em_steps(),
            )
        except CollapseError as e:
            if m.compute_dtype == "float32":
                raise CollapseError(
                    f"{e} With compute_dtype='float32' covariances lose digits for "
                    "components far from the data's centre; retry with "
                    "compute_dtype='float64'.") from None
            raise
        if m.verbose:
            status = "converged" if result.converged else "did not converge"
            print(f"Initialization {init} {status}. time lapse "
                  f"{time.perf_counter() - t0:.5f}s\t lower bound {result.lower_bound:.5f}")
        return result

    def _start(self, init: int, data: Blocks) -> tuple:
        """``(params, lower_bound, resume)``: where restart ``init`` begins."""
        resume = self.state.restarts[init]
        if resume is not None:  # run_em mutates it; the saved state holds snapshots
            return None, -np.inf, replace(resume, lower_bounds=list(resume.lower_bounds))
        if self.warm:
            return self.model._warm_params(), self.model.lower_bound_, None
        # the first restart's local fit draws from the user's own integer random_state,
        # as scikit-learn's default fit does (see parallel.init.sampled_start)
        rs = self.model.random_state
        local = int(rs) if init == 0 and isinstance(rs, Integral) else None
        return self.model._initial(data, self.state.seeds[init], local), -np.inf, None

    def _iterated(self, init: int, info: IterationInfo) -> None:
        info = replace(info, init=init)
        self.iteration_seconds[init].append(info.seconds)
        self.model._progress(info)
        if self.callback is not None:
            self.callback(info)

    def _save(self, init: int, result: EMResult) -> None:
        # a snapshot: run_em goes on mutating ``result`` while other restarts' threads
        # save the shared state
        snapshot = replace(result, lower_bounds=list(result.lower_bounds))
        with self.lock:
            self.state.restarts[init] = snapshot
            self.checkpoint.save(self.state)

    def finish(self, results: list[EMResult]) -> None:
        """Set the model's timings and keep its best restart."""
        self.model.timings_ = {
            "init": self.init_seconds,
            "iterations": [t for ts in self.iteration_seconds for t in ts],
        }
        self.model._keep_best(results)


def _total_log_likelihood_task(params: GMMParams):
    def task(data: Blocks) -> float:
        return data.map_reduce(chunk_stats, merge, params).loglik
    return task


class SharedPasses:
    """Several estimators fitted and scored in shared passes over the same data.

    The data is validated once. :meth:`fit` runs every restart of every model together
    (:func:`distgmm.parallel.lockstep.run_lockstep`): each EM round is ONE pass over the
    data serving all of them; :meth:`total_log_likelihood` scores fitted models in one
    pass. Each model ends up exactly as its own :meth:`GaussianMixture.fit` would leave it.

    Parameters
    ----------
    X : array-like, DataFrame, dask array or dask DataFrame of shape (n_samples, n_features)
    sample_weight : array-like of shape (n_samples,), default=None
    cache : {"auto", "memory", "none"}, default="auto"
        Where dask input lives meanwhile (as :class:`GaussianMixture`'s ``cache``).
    missing : {"error", "omit"}, default="error"
        Rows holding NaN (as :class:`GaussianMixture`'s ``missing``).

    Attributes
    ----------
    passes : int
        Passes over the data made so far, for all models together.
    n_features : int
    n_samples : float
        Total sample weight (the number of rows without ``sample_weight``): the ``n`` of
        BIC.

    Examples
    --------
    >>> shared = SharedPasses(X)  # doctest: +SKIP
    >>> models = [GaussianMixture(k, random_state=0) for k in (2, 3, 4)]  # doctest: +SKIP
    >>> errors = shared.fit(models)  # doctest: +SKIP
    >>> logliks = shared.total_log_likelihood(models)  # doctest: +SKIP
    """

    def __init__(self, X, sample_weight=None, *, cache: str = "auto",
                 missing: str = "error"):
        self._template = GaussianMixture(cache=cache, missing=missing)
        self._template._validate_params()
        self._data = self._template._blocks(X, sample_weight, reset=True)
        self.passes = 0
        self.n_features = self._data.n_features
        self.n_samples = self._data.total_weight()

    @one_blas_thread()  # the driver's M-steps and in-process tasks: see parallel/blas.py
    def fit(self, models: Sequence[GaussianMixture], *,
            callback: Callable[[IterationInfo], None] | None = None,
            labels: Sequence[str] | None = None) -> list[Exception | None]:
        """Fit every model (all their restarts) in shared passes.

        Parameters
        ----------
        models : sequence of GaussianMixture
            Their parameters are checked first (an invalid one raises before any pass).
        callback : callable, optional
            Called after every EM iteration of every model, from that model's thread,
            with an :class:`~distgmm.parallel.em.IterationInfo` whose ``candidate`` is
            the model's label.
        labels : sequence of str, optional
            The models' labels for ``callback``; default ``"k=<n_components>
            <covariance_type>"``.

        Returns
        -------
        errors : list
            Per model, ``None`` if it was fitted, else the exception that stopped it (a
            collapsed component, fewer rows with positive weight than components); a
            failed model is left unfitted, the others go on.
        """
        if labels is None:
            labels = [f"k={m.n_components} {m.covariance_type}" for m in models]
        n_rows = self._data.n_positive_weight_rows()
        errors: list[Exception | None] = [None] * len(models)
        restarts: dict[int, _Restarts] = {}
        tasks, owners = [], []
        for i, m in enumerate(models):
            m._validate_params()
            m.n_features_in_ = self._template.n_features_in_
            m.n_omitted_ = self._data.n_omitted()
            if hasattr(self._template, "feature_names_in_"):
                m.feature_names_in_ = self._template.feature_names_in_
            m._check_parameters(self.n_features)
            warn_if_no_kernel(m.compute_dtype)  # before the threads: see GaussianMixture._fit
            if n_rows < m.n_components:
                errors[i] = ValueError(f"only {n_rows} rows with positive weight")
                continue
            report = None
            if callback is not None:
                def report(info, label=labels[i]):
                    callback(replace(info, candidate=label))
            restarts[i] = _Restarts(m, report)
            own = restarts[i].tasks()
            tasks += own
            owners += [i] * len(own)
        outcomes, passes = run_lockstep(self._data, tasks, fail_fast=False)
        self.passes += passes
        results: dict[int, list[EMResult]] = {i: [] for i in restarts}
        for owner, outcome in zip(owners, outcomes):
            if outcome.error is not None:
                errors[owner] = errors[owner] or outcome.error
            else:
                results[owner].append(outcome.value)
        for i, r in restarts.items():
            if errors[i] is None:
                r.finish(results[i])
        return errors

    @one_blas_thread()
    def total_log_likelihood(self, models: Sequence[GaussianMixture]) -> list[float]:
        """Each fitted model's total (weighted) log-likelihood of the data, in one pass.

        Parameters
        ----------
        models : sequence of fitted GaussianMixture

        Returns
        -------
        list of float
            ``sum_i w_i log p(x_i)`` per model; with :attr:`n_samples`, the input of
            :func:`distgmm.numerics.params.information_criteria`.
        """
        tasks = [_total_log_likelihood_task(m.fitted_params()) for m in models]
        outcomes, passes = run_lockstep(self._data, tasks)
        self.passes += passes
        return [o.value for o in outcomes]


def load_model(path: str, *, storage_options: dict | None = None) -> GaussianMixture:
    """Load a model saved by :meth:`GaussianMixture.save` (or a run's ``model/``).

    Parameters
    ----------
    path : str
        The model directory (or a run output directory holding ``model/``).
    storage_options : dict, optional
        fsspec options for a URL.

    Returns
    -------
    GaussianMixture
        Fitted, with the saved constructor parameters and fit summary; ``metrics_``
        holds the stored metrics.
    """
    return gmm_from_saved(read_model(path, storage_options=storage_options), path)


def gmm_from_saved(saved, path: str) -> GaussianMixture:
    """The :class:`GaussianMixture` a checked :class:`~distgmm.io.model.SavedModel` holds
    (``path`` names it in errors)."""
    if saved.kind != "gmm":
        raise unreadable(path, f"it is a {saved.kind!r} model (BayesianGaussianMixture), "
                               "not a GaussianMixture: load it with distgmm.load_model")
    # keys a newer distgmm added are left out; values this version does not know are
    # refused below, as a fit would refuse them
    known = GaussianMixture().get_params()
    model = GaussianMixture(**{k: v for k, v in saved.params.items() if k in known})
    try:  # the same checks a fit makes: a hand-edited model.json is refused here
        model._validate_params()
        model._check_parameters(saved.n_features)
    except ValueError as e:
        raise unreadable(path, f"its parameters: {' '.join(str(e).split())}") from None
    for name, arr in saved.arrays.items():
        setattr(model, name + "_", arr)
    restore_fit_summary(model, saved)
    return model


def restore_fit_summary(model, saved) -> None:
    """The fit summary, feature names, stored metrics and outlier threshold of a saved
    model, set on ``model`` (either kind of mixture)."""
    model.converged_ = saved.fit["converged"]
    model.n_iter_ = saved.fit["n_iter"]
    model.lower_bound_ = saved.fit["lower_bound"]
    model.lower_bounds_ = saved.fit["lower_bounds"]
    model.n_features_in_ = saved.n_features
    if saved.feature_names:
        model.feature_names_in_ = np.asarray(saved.feature_names, dtype=object)
    model.metrics_ = saved.metrics
    if saved.outliers is not None:  # a threshold set by --outliers / outlier_threshold
        model.outlier_threshold_ = saved.outliers["threshold"]
        model.outlier_fraction_ = saved.outliers["fraction"]
    if saved.gridded is not None:  # fitted on xarray input: predict checks its features
        model.gridded_features_ = saved.gridded
