"""The exact low tail of the per-row log-densities, as a mergeable partial (pure numpy).

A row is an outlier when its log-density is at most the threshold: the ``m``-th
smallest log-density over all ``N`` rows, ``m = ceil(fraction * N)``. Each chunk keeps
its ``m`` smallest values; two partials merge into the ``m`` smallest of their union,
so the tree reduction ends with the exact ``m`` smallest values of the whole data and
the threshold is their maximum: exact, not a sketch. On the data it was computed from,
the flagged count is ``m`` (more only where rows tie at the threshold), so the flagged
fraction is within ``1 / N`` of the one asked for.

Memory is bounded by refusing ``m`` above :data:`MAX_EXACT_ROWS` (a partial holds
``m`` float64 values; a combine of ``split_every`` partials holds that many times more).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MAX_EXACT_ROWS = 1 << 22
"""Most rows a threshold may flag (4,194,304: 32 MiB per partial)."""

FRACTION_RANGE = (0.0, 0.5)
"""Open interval of outlier fractions accepted."""


def check_fraction(fraction) -> float:
    """``fraction`` as a float strictly inside (0, 0.5), else a ``ValueError``."""
    lo, hi = FRACTION_RANGE
    try:
        value = float(fraction)
    except (TypeError, ValueError):
        value = math.nan
    if not lo < value < hi:
        raise ValueError(f"outlier fraction {fraction!r} is not between {lo} and {hi} "
                         "(exclusive): give the share of rows to flag, e.g. 0.01.")
    return value


def flagged_rows(fraction: float, n_samples: int) -> int:
    """``m = ceil(fraction * n_samples)`` (at least 1), refused above the memory cap."""
    fraction = check_fraction(fraction)
    # round first: 0.07 * 100 is 7.000000000000001 in binary, which must flag 7 rows
    m = max(1, math.ceil(round(fraction * n_samples, 6)))
    if m > MAX_EXACT_ROWS:
        most = MAX_EXACT_ROWS / n_samples
        raise ValueError(
            f"outlier fraction {fraction} of {n_samples} rows flags {m} rows, more than "
            f"the {MAX_EXACT_ROWS} the exact threshold pass holds in memory: give a "
            f"fraction of at most {most:.3g} for this data.")
    return m


@dataclass(frozen=True)
class LowTail:
    """The ``m`` smallest values seen (unordered) and how many values were seen.

    Attributes
    ----------
    m : int
    values : ndarray of shape (min(m, n),)
    n : int
    """

    m: int
    values: np.ndarray
    n: int


def _smallest(values: np.ndarray, m: int) -> np.ndarray:
    if values.size <= m:
        return values
    return np.partition(values, m - 1)[:m].copy()  # copy: drop the rest of the chunk


def low_tail(values: np.ndarray, m: int) -> LowTail:
    """The low tail of one chunk of values."""
    v = np.asarray(values, dtype=np.float64).ravel()
    return LowTail(m, _smallest(v, m), v.size)


def merge_low_tails(a: LowTail, b: LowTail) -> LowTail:
    """The low tail of the union of two partials (associative and commutative)."""
    return LowTail(a.m, _smallest(np.concatenate([a.values, b.values]), a.m), a.n + b.n)


def tail_threshold(tail: LowTail) -> float:
    """The ``m``-th smallest value of everything merged into ``tail``."""
    if tail.n < tail.m or tail.values.size == 0:
        raise ValueError(f"{tail.n} rows cannot give the {tail.m}-th smallest log-density.")
    return float(tail.values.max())
