"""Anomaly detection by density: the exact log-density threshold in one pass.

:func:`density_threshold` runs one tree reduction (:mod:`.reduction`) over the data:
each chunk is scored by the model's own ``score_samples`` and keeps its exact low
tail (:mod:`distgmm.numerics.outliers`).
:class:`OutlierMixin` gives any fitted mixture with ``score_samples``
``outlier_threshold`` and ``is_outlier``.
"""

from __future__ import annotations

import copy

import numpy as np

from ..numerics.outliers import (
    LowTail,
    check_fraction,
    flagged_rows,
    low_tail,
    merge_low_tails,
    tail_threshold,
)
from .blocks import dask_blocks, numpy_blocks
from .inputs import dask_input, is_dask, numpy_input


def _scored_tail(x, w, row_start: int, model, m: int):
    """The reduction's chunk function: the low tail of the chunk's log-densities."""
    return low_tail(model.score_samples(x), m)


def _scorer(model):
    """A shallow copy that scores bare numpy chunks without a feature-name warning."""
    scorer = copy.copy(model)
    scorer.__dict__.pop("feature_names_in_", None)
    return scorer


def density_threshold(model, X, fraction: float) -> float:
    """The ``ceil(fraction * N)``-th smallest log-density of the ``N`` rows of ``X``.

    One pass over ``X`` (one Dask compute for dask input): each chunk is scored by
    ``model.score_samples`` where it lives and keeps its ``m`` lowest values; the
    tree reduction (:mod:`.reduction`) merges them into the exact ``m`` lowest.

    Parameters
    ----------
    model : fitted mixture with ``score_samples``
    X : array-like or dask array of shape (N, n_features)
    fraction : float
        Strictly between 0 and 0.5.

    Returns
    -------
    float
        The threshold: ``score_samples(X) <= threshold`` flags ``ceil(fraction * N)``
        rows (more only where rows tie at the threshold).

    Raises
    ------
    ValueError
        A fraction outside (0, 0.5), or one flagging more rows than
        :data:`distgmm.numerics.outliers.MAX_EXACT_ROWS`.
    """
    check_fraction(fraction)
    missing = getattr(model, "missing", "error")
    omit = missing == "omit"  # rows holding NaN are left out, as in the fit
    if is_dask(X):
        blocks = dask_blocks(dask_input(model, X, reset=False), cache="none",
                             omit_missing=omit)
    else:
        blocks = numpy_blocks(numpy_input(model, X, reset=False, missing=missing),
                              omit_missing=omit)
    # enough for every row; with omitted rows, the share of the complete ones (the
    # tail counts them in the same pass)
    m = flagged_rows(fraction, blocks.n_samples)
    tail = blocks.map_reduce(_scored_tail, merge_low_tails, _scorer(model), m)
    if omit:
        m_complete = flagged_rows(fraction, max(tail.n, 1))
        tail = LowTail(m_complete, np.sort(tail.values)[:m_complete], tail.n)
    return tail_threshold(tail)


class OutlierMixin:
    """Outlier flags for a fitted mixture with ``score_samples``.

    A row is an outlier when its log-density is at most ``outlier_threshold_``.
    """

    def outlier_threshold(self, X, fraction: float) -> float:
        """Set the threshold flagging the ``fraction`` of rows of ``X`` with the lowest
        density (one pass over ``X``; exact, see :func:`density_threshold`).

        Parameters
        ----------
        X : array-like or dask array of shape (n_samples, n_features)
        fraction : float
            Share of rows to flag, strictly between 0 and 0.5.

        Returns
        -------
        float
            ``outlier_threshold_``; ``outlier_fraction_`` keeps ``fraction``.
        """
        fraction = check_fraction(fraction)
        threshold = density_threshold(self, X, fraction)
        self.outlier_threshold_, self.outlier_fraction_ = threshold, fraction
        return threshold

    def forget_outlier_threshold(self) -> None:
        """Drop ``outlier_threshold_`` and ``outlier_fraction_`` (a refit does)."""
        for name in ("outlier_threshold_", "outlier_fraction_"):
            self.__dict__.pop(name, None)

    def is_outlier(self, X):
        """``score_samples(X) <= outlier_threshold_`` (lazy for dask input).

        Returns
        -------
        ndarray of bool of shape (n_samples,), or a lazy dask array
        """
        if getattr(self, "outlier_threshold_", None) is None:
            from sklearn.exceptions import NotFittedError

            raise NotFittedError("no outlier threshold: call outlier_threshold(X, "
                                 "fraction) first, or fit with outliers set.")
        return self.score_samples(X) <= self.outlier_threshold_
