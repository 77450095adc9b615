"""Choosing the number of components (and covariance type) by BIC or AIC.

Every candidate and every restart advances together (:mod:`distgmm.parallel.lockstep`):
one pass over the data per EM round serves all of them, and one final pass scores
them all. Each candidate's fit equals ``GaussianMixture(k, covariance_type=ct,
n_init=n_init, random_state=random_state).fit(X)`` on its own.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterable
from dataclasses import replace

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from .estimator import GaussianMixture
from .numerics.params import n_parameters
from .numerics.suffstats import chunk_stats, merge
from .options import CRITERIA
from .parallel.blas import one_blas_thread
from .parallel.lockstep import run_lockstep


def _as_tuple(value) -> tuple:
    if isinstance(value, (str, int, np.integer)):
        return (value,)
    return tuple(value)


def _loglik(params):
    def task(blocks):
        return blocks.map_reduce(chunk_stats, merge, params).loglik
    return task


@one_blas_thread()  # the driver's M-steps and in-process tasks: see parallel/blas.py
def select_model(X, n_components: Iterable[int] | int = range(1, 11),
                 covariance_type: Iterable[str] | str = ("full",), *,
                 criterion: str = "bic", n_init: int = 1, sample_weight=None,
                 callback=None, **params):
    """Fit every candidate in shared passes and keep the one with the lowest criterion.

    Parameters
    ----------
    X : array-like, DataFrame, dask array or dask DataFrame of shape (n_samples, n_features)
    n_components : int or iterable of int, default=range(1, 11)
    covariance_type : str or iterable of str, default=("full",)
    criterion : {"bic", "aic"}, default="bic"
    n_init : int, default=1
        Restarts per candidate (all of them share the passes too).
    sample_weight : array-like of shape (n_samples,), optional
    callback : callable, optional
        Called after every EM iteration of every candidate with an
        :class:`~distgmm.parallel.em.IterationInfo` whose ``candidate`` says which.
    **params
        Other :class:`GaussianMixture` parameters (``tol``, ``max_iter``,
        ``random_state``, ``init_params``, ``reg_covar``, ``cache``).

    Returns
    -------
    best : GaussianMixture
        The fitted candidate with the lowest criterion.
    table : pandas.DataFrame
        One row per candidate: ``n_components``, ``covariance_type``, ``lower_bound``,
        ``bic``, ``aic``, ``n_iter``, ``converged``, ``n_parameters``, ``lower_bounds``
        (per iteration, of the kept restart), ``error`` (why a
        candidate failed, e.g. a collapsed component; its criteria are NaN).
        ``table.attrs["passes"]`` counts the passes over the data made for all
        candidates together.

    Notes
    -----
    BIC and AIC are computed from the total log-likelihood under each candidate's final
    parameters, ``-2 log L + p log n`` and ``-2 log L + 2 p``, as scikit-learn's
    ``bic``/``aic``; with ``sample_weight``, ``log L`` is weighted and ``n`` is the
    total weight.

    Examples
    --------
    >>> best, table = select_model(X, n_components=range(1, 7), criterion="bic")
    ... # doctest: +SKIP
    """
    import pandas as pd

    if criterion not in CRITERIA:
        raise ValueError(f"criterion={criterion!r} is not one of {CRITERIA}.")
    grid = list(itertools.product(_as_tuple(covariance_type), _as_tuple(n_components)))
    if not grid:
        raise ValueError("No candidates: give at least one n_components and covariance_type.")
    models = [GaussianMixture(int(k), covariance_type=ct, n_init=n_init, **params)
              for ct, k in grid]
    template = models[0]
    blocks = template._blocks(X, sample_weight, reset=True)
    n_rows = blocks.n_positive_weight_rows()
    tasks, owners = [], []
    for i, m in enumerate(models):
        m.n_features_in_ = template.n_features_in_
        if hasattr(template, "feature_names_in_"):
            m.feature_names_in_ = template.feature_names_in_
        m._check_parameters(blocks.n_features)
        if n_rows < m.n_components:
            continue
        report = None
        if callback is not None:
            def report(info, label=f"k={m.n_components} {m.covariance_type}"):
                callback(replace(info, candidate=label))
        restart = m._restart_tasks(blocks, report)
        tasks += restart
        owners += [i] * len(restart)
    outcomes, passes = run_lockstep(blocks, tasks, fail_fast=False)
    errors: dict[int, str] = {i: f"only {n_rows} rows with positive weight"
                              for i, m in enumerate(models) if n_rows < m.n_components}
    per_model: dict[int, list] = {}
    for owner, outcome in zip(owners, outcomes):
        if outcome.error is not None:
            errors.setdefault(owner, " ".join(str(outcome.error).split()))
        else:
            per_model.setdefault(owner, []).append(outcome.value)
    fitted = [i for i in range(len(models)) if i not in errors]
    for i in fitted:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            models[i]._finish(per_model[i])
    scores, more = run_lockstep(blocks, [_loglik(models[i]._params()) for i in fitted])
    passes += more
    loglik = {i: o.value for i, o in zip(fitted, scores)}
    total_w = blocks.total_weight()
    rows = []
    for i, ((ct, k), m) in enumerate(zip(grid, models)):
        p = n_parameters(int(k), blocks.n_features, ct)
        row = {"n_components": int(k), "covariance_type": ct, "lower_bound": np.nan,
               "bic": np.nan, "aic": np.nan, "n_iter": 0, "converged": False,
               "n_parameters": p, "error": errors.get(i)}
        row["lower_bounds"] = []
        if i in loglik:
            row.update(lower_bound=m.lower_bound_, n_iter=m.n_iter_, converged=m.converged_,
                       lower_bounds=list(m.lower_bounds_),
                       bic=-2 * loglik[i] + p * np.log(total_w),
                       aic=-2 * loglik[i] + 2 * p)
        rows.append(row)
    table = pd.DataFrame(rows)
    table.attrs["passes"] = passes
    if not fitted:
        raise ValueError("Every candidate failed (see the errors): " + "; ".join(
            f"k={grid[i][1]} {grid[i][0]}: {e}" for i, e in sorted(errors.items())))
    best = int(table[criterion].idxmin())
    return models[best], table
