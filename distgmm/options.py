"""The one list of distgmm's choices and of the shapes each covariance type gives.

The estimator's parameter constraints, the job spec's validators, the CLI's choices, the
model file and the compiled kernel's type codes all read these; nothing else spells
them out. This module imports nothing of distgmm and nothing heavy.
"""

from __future__ import annotations

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
"""Covariance types, in the order of the compiled kernel's type codes (0..3)."""

INIT_PARAMS = ("kmeans", "k-means||", "k-means++", "random", "random_from_data")
"""Initialisations of :class:`distgmm.GaussianMixture`."""

JOB_INIT_PARAMS = (*INIT_PARAMS, "previous")
"""A job may also start from the model it published last time."""

CACHES = ("auto", "memory", "none")
"""Where dask input lives during a fit: persisted if it fits, persisted, re-read."""

COMPUTE_DTYPES = ("float64", "float32")
"""Precision of the E-step arithmetic on a tile of rows (statistics are float64)."""

WEIGHT_CONCENTRATION_PRIOR_TYPES = ("dirichlet_process", "dirichlet_distribution")
"""Weight priors of :class:`distgmm.BayesianGaussianMixture` (scikit-learn's)."""

ESTIMATORS = ("gmm", "bayes")
"""Estimator kinds: ``GaussianMixture`` (EM) or ``BayesianGaussianMixture`` (variational);
the CLI's ``--estimator``, a job spec's ``model.kind`` and a model file's ``kind``."""

CRITERIA = ("bic", "aic")
"""Model-selection criteria of a sweep (lower is better)."""

INPUT_FORMATS = ("auto", "zarr", "parquet", "npy", "delta", "iceberg", "icechunk")
"""Input formats; ``auto`` tells by the suffix and the directory's contents (a
``_delta_log/``, an Iceberg ``metadata/`` or ``iceberg://`` URL, an Icechunk repository)."""

OUTPUT_FORMATS = ("auto", "zarr", "parquet", "delta", "icechunk")
"""Formats of per-row results; ``auto`` is Parquet for Parquet input, Zarr otherwise;
``delta`` and ``icechunk`` commit them to a table (one commit per run)."""

TABLE_OUTPUT_FORMATS = ("delta", "icechunk")
"""The output formats that commit to a table (``output.table``) rather than write files."""


def covariance_code(covariance_type: str) -> int:
    """The compiled kernel's integer code of a covariance type."""
    return COVARIANCE_TYPES.index(covariance_type)


def covariance_shape(covariance_type: str, n_components: int, n_features: int) -> tuple:
    """Shape of ``covariances_``, ``precisions_`` and ``precisions_cholesky_``.

    ==============  ==========
    type            shape
    ==============  ==========
    ``full``        (K, d, d)
    ``tied``        (d, d)
    ``diag``        (K, d)
    ``spherical``   (K,)
    ==============  ==========
    """
    k, d = n_components, n_features
    return {"full": (k, d, d), "tied": (d, d), "diag": (k, d),
            "spherical": (k,)}[covariance_type]

MISSING = ("error", "omit")
"""What a fit does with rows holding NaN: refuse them, or leave them out (label -1)."""
