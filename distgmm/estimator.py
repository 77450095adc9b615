"""``distgmm.GaussianMixture``: scikit-learn's GaussianMixture, fitted on Dask."""

from __future__ import annotations

import threading
import time
import warnings
from dataclasses import replace
from functools import partial

import numpy as np
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from .io.model import read_model, save_model
from .numerics.gaussian import (
    CollapseError,
    precision_cholesky_from_precisions,
)
from .numerics.params import GMMParams, n_parameters
from .numerics.predict import predict_block, predict_proba_block, score_samples_block
from .options import CACHES, COMPUTE_DTYPES, COVARIANCE_TYPES, INIT_PARAMS, covariance_shape
from .parallel.blas import one_blas_thread
from .parallel.blocks import Blocks, dask_blocks, numpy_blocks
from .parallel.em import EMResult, FitState, IterationInfo, run_em
from .parallel.init import initial_params
from .parallel.inputs import (
    check_sample_weight,
    dask_input,
    dask_sample_weight,
    is_dask,
    numpy_input,
)
from .parallel.lockstep import run_lockstep
from .parallel.predict import predict_dask, predict_proba_dask, score_samples_dask


class GaussianMixture(DensityMixin, BaseEstimator):
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
    init_params : {"kmeans", "k-means++", "random", "random_from_data"}, default="kmeans"
        ``"kmeans"`` is k-means|| followed by a few distributed Lloyd passes.
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

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> from distgmm import GaussianMixture
    >>> X = da.from_array(np.random.default_rng(0).normal(size=(1000, 2)), chunks=250)
    >>> gm = GaussianMixture(n_components=2, random_state=0).fit(X)
    >>> gm.predict(X).compute().shape
    (1000,)
    """

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

    # ------------------------------------------------------------------ checks
    def _check_parameters(self, n_features: int) -> None:
        def need(cond, msg):
            if not cond:
                raise ValueError(msg)

        def is_int(v):
            return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

        need(is_int(self.n_components) and self.n_components >= 1,
             f"n_components={self.n_components!r}: give an integer >= 1.")
        need(self.covariance_type in COVARIANCE_TYPES,
             f"covariance_type={self.covariance_type!r} is not one of {COVARIANCE_TYPES}.")
        need(np.isscalar(self.tol) and self.tol >= 0, f"tol={self.tol!r}: give a number >= 0.")
        need(np.isscalar(self.reg_covar) and self.reg_covar >= 0,
             f"reg_covar={self.reg_covar!r}: give a number >= 0.")
        need(is_int(self.max_iter) and self.max_iter >= 0,
             f"max_iter={self.max_iter!r}: give an integer >= 0.")
        need(is_int(self.n_init) and self.n_init >= 1,
             f"n_init={self.n_init!r}: give an integer >= 1.")
        need(self.init_params in INIT_PARAMS,
             f"init_params={self.init_params!r} is not one of {INIT_PARAMS}.")
        need(self.cache in CACHES, f"cache={self.cache!r} is not one of {CACHES}.")
        need(self.compute_dtype in COMPUTE_DTYPES,
             f"compute_dtype={self.compute_dtype!r} is not one of {COMPUTE_DTYPES}.")
        k, d = self.n_components, n_features
        if self.weights_init is not None:
            w = np.asarray(self.weights_init, dtype=np.float64)
            need(w.shape == (k,), f"weights_init has shape {w.shape}; expected {(k,)}.")
            need(np.all(w >= 0) and np.all(w <= 1) and np.isclose(w.sum(), 1.0),
                 "weights_init must be in [0, 1] and sum to 1.")
        if self.means_init is not None:
            m = np.asarray(self.means_init, dtype=np.float64)
            need(m.shape == (k, d), f"means_init has shape {m.shape}; expected {(k, d)}.")
        if self.precisions_init is not None:
            p = np.asarray(self.precisions_init, dtype=np.float64)
            expected = covariance_shape(self.covariance_type, k, d)
            need(p.shape == expected,
                 f"precisions_init has shape {p.shape}; expected {expected} for "
                 f"covariance_type={self.covariance_type!r}.")
            if self.covariance_type in ("diag", "spherical"):
                need(np.all(p > 0), "precisions_init must be positive.")
            else:
                mats = p.reshape(-1, d, d)
                need(np.allclose(mats, mats.transpose(0, 2, 1))
                     and all(np.linalg.eigvalsh(m).min() > 0 for m in mats),
                     f"precisions_init for covariance_type={self.covariance_type!r} must be "
                     "symmetric and positive-definite.")

    def _blocks(self, X, sample_weight, *, reset: bool) -> Blocks:
        min_samples = 2 if reset else 1
        if is_dask(X):
            X = dask_input(self, X, reset=reset, min_samples=min_samples)
            w = None if sample_weight is None else dask_sample_weight(sample_weight, X)
            return dask_blocks(X, w, cache=self.cache)
        X = numpy_input(self, X, reset=reset, min_samples=min_samples)
        w = None if sample_weight is None else check_sample_weight(sample_weight, X.shape[0])
        return numpy_blocks(X, w)

    # ---------------------------------------------------------------- fitting
    def _initial(self, blocks: Blocks, seed: int) -> GMMParams:
        ct = self.covariance_type
        given = [self.weights_init, self.means_init, self.precisions_init]
        if all(v is not None for v in given):
            base = None
        else:
            base = initial_params(
                blocks, self.n_components, ct, self.reg_covar, self.init_params, seed
            )
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
            checkpoint=None) -> GaussianMixture:
        """Estimate the parameters with EM.

        Parameters
        ----------
        X : array-like, DataFrame, dask array or dask DataFrame of shape (n_samples, n_features)
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

        Returns
        -------
        self
        """
        self._fit(X, sample_weight, callback, checkpoint)
        return self

    def fit_predict(self, X, y=None, sample_weight=None, *, callback=None):
        """Fit, then label ``X`` with the final parameters.

        Returns
        -------
        labels : ndarray (or lazy dask array for dask input) of shape (n_samples,)
        """
        blocks = self._fit(X, sample_weight, callback)
        return self._predict_blocks(blocks, predict_block, predict_dask)

    @one_blas_thread()  # the driver's M-steps and in-process tasks: see parallel/blas.py
    def _fit(self, X, sample_weight, callback=None, checkpoint=None) -> Blocks:
        blocks = self._blocks(X, sample_weight, reset=not self._warm())
        self._check_data(blocks)
        tasks = self._restart_tasks(blocks, callback, checkpoint)
        if len(tasks) == 1:
            results = [tasks[0](blocks)]
        else:  # all restarts share every pass over the data
            outcomes, _ = run_lockstep(blocks, tasks)
            results = [o.value for o in outcomes]
        self._finish(results)
        return blocks

    def _check_data(self, blocks: Blocks) -> None:
        n = blocks.n_positive_weight_rows()
        if n < self.n_components:
            raise ValueError(
                f"Expected n_samples >= n_components but got n_components = "
                f"{self.n_components}, n_samples = {n} (rows with positive weight): use "
                "fewer components or more data."
            )
        self._check_parameters(blocks.n_features)

    def _restart_tasks(self, blocks: Blocks, callback=None, checkpoint=None) -> list:
        """One task per restart: ``task(data) -> EMResult`` (initialise, then EM)."""
        warm = self._warm()
        n_init = 1 if warm else self.n_init
        rng = check_random_state(self.random_state)
        seeds = [int(rng.randint(np.iinfo(np.int32).max)) for _ in range(n_init)]
        state = checkpoint.restore() if checkpoint is not None else None
        if state is None:
            state = FitState(seeds, [None] * n_init)
        self.timings_ = {"init": 0.0, "iterations": []}
        self._iteration_seconds = [[] for _ in range(n_init)]
        lock = threading.Lock()

        def restart(init: int, data: Blocks) -> EMResult:
            t0 = time.perf_counter()
            resume, params, lb0 = state.restarts[init], None, -np.inf
            if resume is not None:  # run_em mutates it; the saved state holds snapshots
                resume = replace(resume, lower_bounds=list(resume.lower_bounds))
            if resume is None and warm:
                params, lb0 = self._params(), self.lower_bound_
            elif resume is None:
                params = self._initial(data, state.seeds[init])
            with lock:
                self.timings_["init"] += time.perf_counter() - t0

            def on_result(result) -> None:
                # a snapshot: run_em goes on mutating ``result`` while other restarts'
                # threads save the shared state
                snapshot = replace(result, lower_bounds=list(result.lower_bounds))
                with lock:
                    state.restarts[init] = snapshot
                    checkpoint.save(state)

            def on_iteration(info: IterationInfo) -> None:
                info = replace(info, init=init)
                self._iteration_seconds[init].append(info.seconds)
                self._progress(info)
                if callback is not None:
                    callback(info)

            try:
                result = run_em(
                    data, params, tol=self.tol, max_iter=self.max_iter,
                    reg_covar=self.reg_covar, compute_dtype=self.compute_dtype,
                    lower_bound=lb0, callback=on_iteration,
                    resume=resume, on_result=None if checkpoint is None else on_result,
                )
            except CollapseError as e:
                if self.compute_dtype == "float32":
                    raise CollapseError(
                        f"{e} With compute_dtype='float32' covariances lose digits for "
                        "components far from the data's centre; retry with "
                        "compute_dtype='float64'.") from None
                raise
            if self.verbose:
                status = "converged" if result.converged else "did not converge"
                print(f"Initialization {init} {status}. time lapse "
                      f"{time.perf_counter() - t0:.5f}s\t lower bound {result.lower_bound:.5f}")
            return result

        return [partial(restart, i) for i in range(n_init)]

    def _finish(self, results: list) -> None:
        """Keep the best restart (scikit-learn's rule: the first of the best bounds)."""
        self.timings_["iterations"] = [t for ts in self._iteration_seconds for t in ts]
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

    def _params(self) -> GMMParams:
        check_is_fitted(self, "precisions_cholesky_")
        return GMMParams(
            self.weights_, self.means_, self.precisions_cholesky_, self.covariance_type,
            getattr(self, "covariances_", None),
        )

    # ---------------------------------------------------------------- predict
    def _predict_blocks(self, blocks: Blocks, numpy_fn, dask_fn):
        params = self._params()
        if blocks.is_dask:
            return dask_fn(blocks.X, params)
        return numpy_fn(blocks.X, params)

    def _apply(self, X, numpy_fn, dask_fn):
        params = self._params()
        if is_dask(X):
            return dask_fn(dask_input(self, X, reset=False), params)
        return numpy_fn(numpy_input(self, X, reset=False), params)

    def predict(self, X):
        """Most probable component of each row.

        Returns
        -------
        labels : ndarray of shape (n_samples,), or a lazy dask array for dask input
        """
        return self._apply(X, predict_block, predict_dask)

    def predict_proba(self, X):
        """Posterior probability of each component for each row.

        Returns
        -------
        resp : ndarray of shape (n_samples, n_components), or a lazy dask array
        """
        return self._apply(X, predict_proba_block, predict_proba_dask)

    def score_samples(self, X):
        """Log-likelihood of each row.

        Returns
        -------
        log_prob : ndarray of shape (n_samples,), or a lazy dask array
        """
        return self._apply(X, score_samples_block, score_samples_dask)

    def _total_log_likelihood(self, X) -> tuple[float, int]:
        s = self.score_samples(X)
        if is_dask(s):
            import dask

            total, n = dask.compute(s.sum(), s.shape[0])
            return float(total), int(n)
        return float(s.sum()), len(s)

    def score(self, X, y=None) -> float:
        """Mean per-row log-likelihood of ``X`` (computed eagerly for dask input)."""
        total, n = self._total_log_likelihood(X)
        return total / n

    def _n_parameters(self) -> int:
        return n_parameters(self.n_components, self.means_.shape[1], self.covariance_type)

    def bic(self, X) -> float:
        """Bayesian information criterion on ``X`` (lower is better)."""
        total, n = self._total_log_likelihood(X)
        return -2 * total + self._n_parameters() * np.log(n)

    def aic(self, X) -> float:
        """Akaike information criterion on ``X`` (lower is better)."""
        total, _ = self._total_log_likelihood(X)
        return -2 * total + 2 * self._n_parameters()

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
    saved = read_model(path, storage_options=storage_options)
    known = GaussianMixture().get_params()
    model = GaussianMixture(**{k: v for k, v in saved.params.items() if k in known})
    for name, arr in saved.arrays.items():
        setattr(model, name + "_", arr)
    model.converged_ = saved.fit["converged"]
    model.n_iter_ = saved.fit["n_iter"]
    model.lower_bound_ = saved.fit["lower_bound"]
    model.lower_bounds_ = saved.fit["lower_bounds"]
    model.n_features_in_ = saved.n_features
    if saved.feature_names:
        model.feature_names_in_ = np.asarray(saved.feature_names, dtype=object)
    model.metrics_ = saved.metrics
    return model
