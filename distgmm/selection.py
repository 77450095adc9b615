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

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from .estimator import GaussianMixture, SharedPasses
from .numerics.params import information_criteria, n_parameters
from .options import CRITERIA


def _as_tuple(value) -> tuple:
    if isinstance(value, (str, int, np.integer)):
        return (value,)
    return tuple(value)


def _row(model: GaussianMixture, n_features: int, error: Exception | None) -> dict:
    """A candidate's row of the table, before its criteria."""
    k, ct = model.n_components, model.covariance_type
    row = {"n_components": k, "covariance_type": ct, "lower_bound": np.nan,
           "bic": np.nan, "aic": np.nan, "n_iter": 0, "converged": False,
           "n_parameters": n_parameters(k, n_features, ct),
           "error": None if error is None else " ".join(str(error).split()),
           "lower_bounds": []}
    if error is None:
        row.update(lower_bound=model.lower_bound_, n_iter=model.n_iter_,
                   converged=model.converged_, lower_bounds=list(model.lower_bounds_))
    return row


def _table(models: list, errors: list, shared: SharedPasses):
    """One row per candidate; the fitted ones scored in one shared pass."""
    import pandas as pd

    rows = [_row(m, shared.n_features, e) for m, e in zip(models, errors)]
    fitted = [i for i, e in enumerate(errors) if e is None]
    logliks = shared.total_log_likelihood([models[i] for i in fitted])
    for i, loglik in zip(fitted, logliks):
        rows[i].update(information_criteria(loglik, shared.n_samples, models[i].n_components,
                                            shared.n_features, models[i].covariance_type))
    table = pd.DataFrame(rows)
    table.attrs["passes"] = shared.passes
    return table


def _best(table, criterion: str) -> int:
    """Row of the lowest criterion (the first of equals); raises if every candidate failed."""
    if table["error"].notna().all():
        raise ValueError("Every candidate failed (see the errors): " + "; ".join(
            f"k={r.n_components} {r.covariance_type}: {r.error}" for r in table.itertuples()))
    return int(table[criterion].idxmin())


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
    if criterion not in CRITERIA:
        raise ValueError(f"criterion={criterion!r} is not one of {CRITERIA}.")
    grid = list(itertools.product(_as_tuple(covariance_type), _as_tuple(n_components)))
    if not grid:
        raise ValueError("No candidates: give at least one n_components and covariance_type.")
    models = [GaussianMixture(int(k), covariance_type=ct, n_init=n_init, **params)
              for ct, k in grid]
    shared = SharedPasses(X, sample_weight, cache=models[0].cache,
                          missing=models[0].missing)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # the table says "converged"
        errors = shared.fit(models, callback=callback)
    table = _table(models, errors, shared)
    return models[_best(table, criterion)], table
