"""Scheduled runs: find the model a job published on its previous run, start from it,
and measure how far today's data and model drifted from it."""

from __future__ import annotations

import json
import posixpath

import numpy as np

from .publish import SUCCESS


def previous_output(spec) -> str | None:
    """The latest published output of an earlier run of this job, or None.

    Earlier runs are the outputs matching :attr:`JobSpec.sibling_outputs` that sort
    before this run's output (ISO dates sort in time order), are published
    (``_SUCCESS``) and were written by a job of the same name.
    """
    import fsspec

    pattern = spec.sibling_outputs
    if pattern is None:
        return None
    so = spec.output.storage_options
    fs, current = fsspec.core.url_to_fs(spec.output.path, **so)
    _, glob = fsspec.core.url_to_fs(pattern, **so)
    current = current.rstrip("/")
    for path in sorted(fs.glob(glob), reverse=True):
        path = path.rstrip("/")
        if path >= current or not fs.exists(posixpath.join(path, SUCCESS)):
            continue
        try:
            metrics = json.loads(fs.cat_file(posixpath.join(path, "metrics.json")))
        except (FileNotFoundError, ValueError):
            continue
        if metrics.get("job", {}).get("name") == spec.name:
            return fs.unstrip_protocol(path) if "://" in spec.output.path else path
    return None


def warm_start_params(previous, n_components: int, covariance_type: str,
                      n_features: int) -> dict:
    """``weights_init``/``means_init``/``precisions_init`` from the previous model."""
    have = (previous.n_components, previous.covariance_type, previous.n_features_in_)
    want = (n_components, covariance_type, n_features)
    if have != want:
        raise ValueError(
            f"The previous model has k={have[0]} {have[1]} on {have[2]} features but this "
            f"run asks for k={want[0]} {want[1]} on {want[2]}: use another init_params, "
            "or keep the job's model settings."
        )
    return {"weights_init": previous.weights_, "means_init": previous.means_,
            "precisions_init": previous.precisions_, "n_init": 1}


def drift(previous_path: str, previous, model, loglik_previous: float,
          loglik_new: float, n: float) -> dict:
    """How today's data and model differ from the previous run's.

    Components are matched by their means (Hungarian assignment), so the comparison
    holds after a cold start too.
    """
    from scipy.optimize import linear_sum_assignment

    cost = np.linalg.norm(model.means_[:, None, :] - previous.means_[None, :, :], axis=2)
    rows, cols = linear_sum_assignment(cost)
    return {
        "previous_output": previous_path,
        "mean_log_likelihood_under_previous_model": loglik_previous / n,
        "mean_log_likelihood_under_new_model": loglik_new / n,
        "log_likelihood_gain": (loglik_new - loglik_previous) / n,
        "matched_components": [[int(r), int(c)] for r, c in zip(rows, cols)],
        "weight_change": [float(model.weights_[r] - previous.weights_[c])
                          for r, c in zip(rows, cols)],
        "mean_shift": [float(cost[r, c]) for r, c in zip(rows, cols)],
        "max_mean_shift": float(cost[rows, cols].max()),
    }
