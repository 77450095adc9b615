"""distgmm: Gaussian-mixture clustering (EM) for data that does not fit on one machine.

The public API. Names are imported on first use, so ``import distgmm`` stays light
(no dask, pandas, pyarrow or pydantic until something needs them).
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

try:  # pyproject.toml is the one place the version is written
    __version__ = version("distgmm")
except PackageNotFoundError:  # a source tree on sys.path, not installed
    __version__ = "0+unknown"
del PackageNotFoundError, version

_EXPORTS = {
    "GaussianMixture": "distgmm.estimator",
    "BayesianGaussianMixture": "distgmm.bayesian",
    "load_model": "distgmm.bayesian",
    "save_model": "distgmm.io.model",
    "GMMParams": "distgmm.numerics.params",
    "select_model": "distgmm.selection",
    "open_source": "distgmm.io.sources",
    "JobSpec": "distgmm.jobs.spec",
    "run_job": "distgmm.jobs.pipeline",
    "predict_job": "distgmm.jobs.pipeline",
    "sample_mixture": "distgmm.parallel.sample",
    "sample_job": "distgmm.jobs.sample",
}
__all__ = ["BayesianGaussianMixture", "GMMParams", "GaussianMixture", "JobSpec", "load_model",
           "open_source", "predict_job", "run_job", "sample_job", "sample_mixture", "save_model",
           "select_model"]

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ imports
    from .bayesian import BayesianGaussianMixture, load_model
    from .estimator import GaussianMixture
    from .io.model import save_model
    from .io.sources import open_source
    from .jobs.pipeline import predict_job, run_job
    from .jobs.sample import sample_job
    from .jobs.spec import JobSpec
    from .numerics.params import GMMParams
    from .parallel.sample import sample_mixture
    from .selection import select_model


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'distgmm' has no attribute {name!r}")
    value = getattr(import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
