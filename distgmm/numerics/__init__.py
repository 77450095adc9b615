"""Numerical kernels of distgmm: log-densities, sufficient statistics, M-step, k-means.

numpy, plus one compiled C kernel for the float64 E-step (``_estep.c``, built by
setup.py; :func:`kernel_info` says which runs). Nothing in this package imports dask;
a test enforces it.
"""

from .gaussian import log_gaussian_prob, precision_cholesky
from .mstep import estimate_gaussian_parameters, m_step
from .params import GMMParams, n_parameters
from .suffstats import (
    SuffStats,
    chunk_stats,
    kernel_info,
    merge,
    merge_all,
    resp_stats,
    warn_if_no_kernel,
)

__all__ = [
    "GMMParams",
    "SuffStats",
    "chunk_stats",
    "estimate_gaussian_parameters",
    "kernel_info",
    "log_gaussian_prob",
    "m_step",
    "merge",
    "merge_all",
    "n_parameters",
    "precision_cholesky",
    "resp_stats",
    "warn_if_no_kernel",
]
