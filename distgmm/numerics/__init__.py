"""Numerical kernels of distgmm: log-densities, sufficient statistics, M-step, k-means.

numpy, plus one compiled C kernel for the float64 E-step (``_estep.c``, built by
setup.py; :func:`kernel_info` says which runs). Nothing in this package imports dask;
an import-linter contract enforces it.

Names load on first use, so a module that needs only a small part (the input checks
need :mod:`.finite`) does not load the compiled kernel.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

_EXPORTS = {
    "log_gaussian_prob": "gaussian", "precision_cholesky": "gaussian",
    "estimate_gaussian_parameters": "mstep", "m_step": "mstep",
    "GMMParams": "params", "n_parameters": "params",
    "SuffStats": "suffstats", "chunk_stats": "suffstats", "kernel_info": "suffstats",
    "merge": "suffstats", "merge_all": "suffstats", "resp_stats": "suffstats",
    "warn_if_no_kernel": "suffstats",
}
__all__ = ["GMMParams", "SuffStats", "chunk_stats", "estimate_gaussian_parameters",
           "kernel_info", "log_gaussian_prob", "m_step", "merge", "merge_all",
           "n_parameters", "precision_cholesky", "resp_stats", "warn_if_no_kernel"]

if TYPE_CHECKING:
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


def __getattr__(name: str):
    if name not in _EXPORTS:  # a submodule, as ``distgmm.numerics.suffstats``
        try:
            return import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":  # the submodule exists; its import failed
                raise
            raise AttributeError(
                f"module 'distgmm.numerics' has no attribute {name!r}") from None
    value = getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
