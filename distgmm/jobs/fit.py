"""Stage 3 of a job: fit one model (with checkpoints) or a sweep of candidates."""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from ..bayesian import BayesianGaussianMixture
from ..estimator import GaussianMixture
from ..numerics.finite import NonFiniteError
from ..selection import select_model
from .events import Reporter
from .load import LoadedInput
from .previous import PreviousRun, warm_start_params


@dataclass(frozen=True)
class FittedModel:
    """A job's fitted model, how it was chosen (sweeps), and the fit's seconds."""

    model: GaussianMixture
    selection: dict | None
    seconds: float


def fit_job_model(spec, loaded: LoadedInput, previous: PreviousRun | None,
                  reporter: Reporter) -> FittedModel:
    """Fit the job's model, or every candidate of its sweep in shared passes."""
    try:
        return _fit_job_model(spec, loaded, previous, reporter)
    except NonFiniteError as e:  # the input's column names, where it has them
        raise e.named(loaded.dataset.feature_names) from None


def _fit_job_model(spec, loaded: LoadedInput, previous: PreviousRun | None,
                   reporter: Reporter) -> FittedModel:
    t0 = time.perf_counter()
    if spec.model.is_sweep:
        model, selection = _select(loaded, spec, reporter)
    else:
        params = spec.model.estimator_params()
        if previous is not None and spec.model.init_params == "previous":
            params.update(warm_start_params(previous.model, params["n_components"],
                                            params["covariance_type"],
                                            loaded.dataset.n_features))
        estimator = BayesianGaussianMixture if spec.model.kind == "bayes" else GaussianMixture
        model, selection = estimator(**params), None
        _fit_with_checkpoint(model, loaded, reporter)
    if loaded.dataset.feature_names:
        model.feature_names_in_ = np.asarray(loaded.dataset.feature_names, dtype=object)
    seconds = time.perf_counter() - t0
    omitted = getattr(model, "n_omitted_", 0)
    reporter.event("fit", f"fitted in {seconds:.1f} s: {model.n_iter_} iterations, "
                   f"converged={model.converged_}, lower bound {model.lower_bound_:.6f}"
                   + (f", {omitted} rows omitted (missing values)"
                      if model.missing == "omit" else ""),
                   **({"n_omitted": omitted} if model.missing == "omit" else {}),
                   n_iter=model.n_iter_, converged=model.converged_,
                   lower_bound=model.lower_bound_, seconds=round(seconds, 3))
    return FittedModel(model, selection, seconds)


def _fit_with_checkpoint(model: GaussianMixture, loaded: LoadedInput,
                         reporter: Reporter) -> None:
    ckpt = loaded.checkpoint
    state = ckpt.restore()
    if state is not None:
        done = [0 if r is None else r.n_iter for r in state.restarts]
        reporter.event("resume", f"resuming from {ckpt.url}: iterations done per restart "
                       f"{done}", n_iter=min(done), iterations=done)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(loaded.dataset.X, callback=reporter.iteration, checkpoint=ckpt)
    for w in caught:  # a job reports non-convergence as an event; the rest go on
        if issubclass(w.category, ConvergenceWarning):
            reporter.event("warning", f"warning: {w.message}", warning=str(w.message))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def _select(loaded: LoadedInput, spec, reporter: Reporter) -> tuple[GaussianMixture, dict]:
    """Fit every candidate of a sweep in shared passes; the best by the criterion."""
    ks, cts = spec.model.candidates
    params = spec.model.estimator_params()
    for key in ("n_components", "covariance_type", "n_init"):
        params.pop(key)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        best, table = select_model(loaded.dataset.X, ks, cts, criterion=spec.model.criterion,
                                   n_init=spec.model.n_init, callback=reporter.iteration,
                                   **params)
    passes = table.attrs["passes"]
    reporter.event("selected", f"selected k={best.n_components} {best.covariance_type} "
                   f"by {spec.model.criterion} among {len(table)} candidates in "
                   f"{passes} passes", n_components=best.n_components,
                   covariance_type=best.covariance_type, passes=passes)
    return best, {"criterion": spec.model.criterion, "passes": passes,
                  "candidates": table.to_dict(orient="records")}
