"""The one builder of ``metrics.json``: what a scoring pass found, and what a fit did."""

from __future__ import annotations

import posixpath

from ..io.model import library_versions
from ..io.outputs import sizes_array
from ..io.sources import Dataset
from ..numerics.params import information_criteria


def scoring_metrics(dataset: Dataset, n_components: int, total: float, sizes,
                    predictions_path: str | None) -> dict:
    """What every run's ``metrics.json`` says: the rows scored and where they went."""
    return {
        "n_samples": dataset.n_samples, "n_features": dataset.n_features,
        "n_components": n_components,
        "mean_log_likelihood": total / dataset.n_samples,
        "cluster_sizes": sizes_array(sizes, n_components),
        "input": dataset.description,
        "outputs": {"predictions": posixpath.basename(predictions_path)
                    if predictions_path else None},
        "versions": library_versions(),
    }


def fit_metrics(model, dataset: Dataset, total: float, sizes,
                predictions_path: str | None) -> dict:
    """:func:`scoring_metrics` plus the fit's summary and information criteria."""
    k, ct = model.n_components, model.covariance_type
    metrics = scoring_metrics(dataset, k, total, sizes, predictions_path)
    metrics["outputs"]["model"] = "model"
    return {
        **metrics, "covariance_type": ct,
        "n_iter": int(model.n_iter_), "converged": bool(model.converged_),
        "lower_bound": float(model.lower_bound_),
        "lower_bounds": [float(v) for v in model.lower_bounds_],
        **information_criteria(total, dataset.n_samples, k, dataset.n_features, ct),
        "weights": model.weights_.tolist(),
        "feature_names": list(dataset.feature_names) if dataset.feature_names else None,
    }
