"""The one builder of ``metrics.json``: what a scoring pass found, and what a fit did.

Keys keep the order earlier releases wrote (diff-friendly for people who compare runs).
"""

from __future__ import annotations

import posixpath

from ..io.model import library_versions
from ..io.outputs import sizes_array
from ..io.sources import Dataset
from ..numerics.params import information_criteria


def _scored(dataset: Dataset, n_components: int, total: float, sizes,
            missing: str = "error") -> dict:
    counts = sizes_array(sizes, n_components)
    if missing != "omit":
        return {"mean_log_likelihood": total / dataset.n_samples, "cluster_sizes": counts}
    # rows omitted for missing values have no label: they are the rows not counted
    scored = sum(counts)
    return {"mean_log_likelihood": total / scored if scored else float("nan"),
            "cluster_sizes": counts, "n_omitted": dataset.n_samples - scored}


def _where(dataset: Dataset, predictions_path: str | None, **more) -> dict:
    name = posixpath.basename(predictions_path) if predictions_path else None
    return {"input": dataset.description, "outputs": {"predictions": name, **more},
            "versions": library_versions()}


def scoring_metrics(dataset: Dataset, model_path: str, n_components: int, total: float,
                    sizes, predictions_path: str | None, missing: str = "error") -> dict:
    """What ``distgmm predict`` reports: the rows scored under a saved model."""
    return {"n_samples": dataset.n_samples, "n_features": dataset.n_features,
            "n_components": n_components, "model": model_path,
            **_scored(dataset, n_components, total, sizes, missing),
            **_where(dataset, predictions_path)}


SWITCHED_OFF_WEIGHT = 1e-3
"""A Bayesian mixture's component with a weight below this is reported switched off."""


def _bayes(model) -> dict:
    """``kind`` and the switched-off components of a BayesianGaussianMixture (else {})."""
    if not hasattr(model, "weight_concentration_"):
        return {}
    off = [int(k) for k in (model.weights_ < SWITCHED_OFF_WEIGHT).nonzero()[0]]
    return {"kind": "bayes", "switched_off": off,
            "effective_components": model.n_components - len(off)}


def fit_metrics(model, dataset: Dataset, total: float, sizes,
                predictions_path: str | None) -> dict:
    """What a fit reports: its summary, the scored rows and the information criteria."""
    k, ct = model.n_components, model.covariance_type
    scored = _scored(dataset, k, total, sizes, model.missing)
    n = dataset.n_samples - scored.get("n_omitted", 0)
    omitted = {"n_omitted": scored["n_omitted"]} if "n_omitted" in scored else {}
    return {
        "n_samples": dataset.n_samples, "n_features": dataset.n_features,
        "n_components": k, "covariance_type": ct,
        "n_iter": int(model.n_iter_), "converged": bool(model.converged_),
        "lower_bound": float(model.lower_bound_),
        "lower_bounds": [float(v) for v in model.lower_bounds_],
        "mean_log_likelihood": scored["mean_log_likelihood"],
        **information_criteria(total, n, k, dataset.n_features, ct),
        "weights": model.weights_.tolist(), "cluster_sizes": scored["cluster_sizes"],
        **omitted,
        "feature_names": list(dataset.feature_names) if dataset.feature_names else None,
        **_where(dataset, predictions_path, model="model"),
        **_bayes(model),
    }


def outlier_metrics(model, flagged, n_samples: int) -> dict:
    """The ``outliers`` section of ``metrics.json`` (empty without a threshold)."""
    threshold = getattr(model, "outlier_threshold_", None)
    if threshold is None or flagged is None:
        return {}
    return {"outliers": {"fraction": float(model.outlier_fraction_),
                         "threshold": float(threshold), "method": "exact",
                         "flagged": int(flagged),
                         "flagged_fraction": int(flagged) / max(1, n_samples)}}
