"""Scheduled runs: find what a job published before (this very run, or an earlier
one), start from it, and measure how far today's data and model drifted from it."""

from __future__ import annotations

import json
import posixpath
import re
from typing import Any, NamedTuple

import numpy as np

from ..bayesian import load_model  # either kind of model
from ..io.integrity import MAX_METRICS_BYTES, read_bounded
from ..io.publish import SUCCESS, is_published
from .events import Reporter


class PreviousRun(NamedTuple):
    """The output an earlier run of the job published, and its model."""

    path: str
    model: Any


def already_published(spec) -> dict | None:
    """The metrics of an output this very job already published, else None."""
    import fsspec

    url, so = spec.output.path, spec.output.storage_options
    if spec.output.overwrite or not is_published(url, so):
        return None
    fs, path = fsspec.core.url_to_fs(url, **so)
    try:
        metrics = json.loads(read_bounded(fs, posixpath.join(path, "metrics.json"),
                                          MAX_METRICS_BYTES))
    except (FileNotFoundError, ValueError):
        return None
    same = metrics.get("job", {}).get("fingerprint") == spec.fingerprint()
    return metrics if same else None


def previous_run(spec, n_features: int, reporter: Reporter) -> PreviousRun | None:
    """This job's previous published run, for a warm start and the drift section.

    None when there is none, or (with a drift note) when it had other features.
    """
    warm = spec.model.init_params == "previous"
    if warm and spec.model.is_sweep:
        raise ValueError("init_params: previous starts one model from the last one; a "
                         "sweep of several candidates cannot: use kmeans for sweeps.")
    path = previous_output(spec)
    if path is None:
        if warm:
            reporter.event("warm-start", "no previous run of this job is published: "
                           "starting from k-means", previous=None)
        return None
    model = load_model(path, storage_options=spec.output.storage_options)
    if model.n_features_in_ != n_features:
        if warm:
            raise ValueError(f"The previous run {path} has {model.n_features_in_} features; "
                             f"this input has {n_features}: select the same columns.")
        reporter.event("drift", f"no drift section: the previous run {path} used "
                       f"{model.n_features_in_} features, this one {n_features}",
                       previous=path)
        return None
    if warm:
        reporter.event("warm-start", f"starting from the model published at {path}",
                       previous=path)
    return PreviousRun(path, model)


def _order(key: str):
    """Run keys compare as numbers when they are numbers, else as text (ISO dates)."""
    return (0, int(key), "") if key.isdigit() else (1, 0, key)


def previous_output(spec) -> str | None:
    """The published output of this job's latest earlier run, or None.

    Earlier runs are outputs at the job's templated output path with another value of
    its ``run_key`` (``{date}`` by default) that sorts before this run's, that are
    published (``_SUCCESS``, ``model/``) and whose metrics name the same job. A job
    without a name has no previous runs.
    """
    import fsspec

    siblings = spec.sibling_outputs()
    if siblings is None or not spec.name:
        return None
    pattern, regex, current = siblings
    so = spec.output.storage_options
    fs, glob = fsspec.core.url_to_fs(pattern, **so)
    # glob lists paths without the URL's protocol: match them without it too
    key_of = re.compile(re.sub(r"^[a-z][a-z0-9+.\-]*://", "", regex))
    found = []
    for path in fs.glob(glob):
        path = path.rstrip("/")
        m = key_of.fullmatch(path)
        if m is None or m.group("key").startswith("."):
            continue
        if _order(m.group("key")) < _order(current):
            found.append((_order(m.group("key")), path))
    for _, path in sorted(found, reverse=True):
        if not (fs.exists(posixpath.join(path, SUCCESS))
                and fs.exists(posixpath.join(path, "model", "model.json"))):
            continue
        try:
            metrics = json.loads(read_bounded(fs, posixpath.join(path, "metrics.json"),
                                              MAX_METRICS_BYTES))
        except (FileNotFoundError, ValueError):
            continue
        if (metrics.get("job") or {}).get("name") == spec.name:
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


def drift(previous: PreviousRun, model, loglik_previous: float, loglik_new: float,
          n: float) -> dict:
    """How today's data and model differ from the previous run's.

    Components are matched by their means (Hungarian assignment), so the comparison
    holds after a cold start too.
    """
    from scipy.optimize import linear_sum_assignment

    previous_path, previous = previous
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
