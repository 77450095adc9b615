"""Anomaly detection by density: the exact log-density threshold in one pass.

:func:`density_threshold` scores nothing itself: it takes per-row log-densities (a
model's ``score_samples``, lazy for dask input) and runs one tree reduction
(:mod:`.reduction`) of exact low tails (:mod:`distgmm.numerics.outliers`) over them.
:class:`OutlierMixin` gives any fitted mixture with ``score_samples``
``outlier_threshold`` and ``is_outlier``.
"""

from __future__ import annotations

import numpy as np

from ..numerics.outliers import (
    check_fraction,
    flagged_rows,
    low_tail_block,
    merge_low_tails,
    tail_threshold,
)
from .blocks import dask_blocks, numpy_blocks
from .inputs import is_dask


def density_threshold(scores, fraction: float) -> float:
    """The ``ceil(fraction * N)``-th smallest of ``N`` log-densities, exactly.

    Parameters
    ----------
    scores : ndarray or dask.array.Array of shape (N,)
        Per-row log-densities; a dask array is computed once (one pass), chunk by
        chunk, with only each chunk's low tail travelling.
    fraction : float
        Strictly between 0 and 0.5.

    Returns
    -------
    float
        The threshold: ``scores <= threshold`` flags ``ceil(fraction * N)`` rows
        (more only where rows tie at the threshold).

    Raises
    ------
    ValueError
        A fraction outside (0, 0.5), or one flagging more rows than
        :data:`distgmm.numerics.outliers.MAX_EXACT_ROWS`.
    """
    m = flagged_rows(fraction, int(scores.shape[0]))
    if is_dask(scores):
        blocks = dask_blocks(scores[:, None], cache="none")
    else:
        blocks = numpy_blocks(np.asarray(scores, dtype=np.float64)[:, None])
    return tail_threshold(blocks.map_reduce(low_tail_block, merge_low_tails, m))


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
        threshold = density_threshold(self.score_samples(X), fraction)
        self.outlier_threshold_, self.outlier_fraction_ = threshold, fraction
        return threshold

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
