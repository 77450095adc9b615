"""Run a job: open the input, fit on the cluster, publish model, results and metrics.

Published output directory::

    OUTPUT/
      model/                 loadable with distgmm.load_model
      metrics.json
      predictions.zarr/      or predictions.parquet/ (labels, probabilities, log-likelihood)
      _SUCCESS               written last
"""

from __future__ import annotations

import posixpath
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from ..io.checkpoint import Checkpoint
from ..io.model import library_versions, write_model_files
from ..io.outputs import PredictionOptions, predictions, sizes_array, write_json
from ..io.publish import Publication, is_published
from ..io.sources import Dataset, open_source
from ..numerics.params import n_parameters
from .cluster import connect
from .compute import compute
from .events import Reporter
from .previous import drift, previous_output, warm_start_params
from .spec import JobSpec, OutputSpec


def _persist(client, dataset: Dataset, cache: str, reporter: Reporter) -> Dataset:
    from ..parallel.blocks import should_persist

    if not should_persist(dataset.X, cache):
        return dataset
    X = client.persist(dataset.X)
    reporter.wait(X, "loading the data into cluster memory")
    return Dataset(X, dataset.feature_names, dataset.frame, dataset.id_column,
                   dataset.passthrough, dataset.description)


REPORT_POINTS = 4000


def _report_terms(dataset: Dataset, center: np.ndarray) -> list:
    """Lazy sum and cross-product of ``X - center`` (principal axes without
    cancellation far from the origin) and a row sample, for the report."""
    from .report import _pyplot

    _pyplot()  # fail before the pass if matplotlib is missing
    X = dataset.X.astype(np.float64)
    Xc = X - center
    n = dataset.n_samples
    rng = np.random.default_rng(0)
    idx = np.sort(rng.choice(n, min(n, REPORT_POINTS), replace=False))
    return [Xc.sum(axis=0), Xc.T @ Xc, X[idx]]


def _publish_results(client, model, dataset: Dataset, output: OutputSpec, pub: Publication,
                     reporter: Reporter, extra: dict, previous=None) -> dict:
    """The prediction pass, metrics.json and model/ into the staging directory.

    ``previous`` (path, model) adds the drift section, scored in the same pass.
    """
    from ..parallel.predict import score_samples_dask

    t0 = time.perf_counter()
    params = model._params()
    opts = PredictionOptions(output.labels, output.probabilities, output.log_likelihood,
                             output.format)
    pending = predictions(dataset, params, pub.staging_url, opts, output.storage_options)
    reporter.event("predict", "scoring every row under the final model"
                   + (" and writing the results" if pending.path else ""))
    scored = [pending.total_log_likelihood, pending.cluster_sizes]
    if previous is not None:
        scored.append(score_samples_dask(dataset.X, previous[1]._params()).sum())
    figures = _report_terms(dataset, params.center) if output.report else []
    results = compute(client, [*pending.writes, *scored, *figures], reporter,
                       "writing results")
    total, sizes, *before = results[len(pending.writes):len(pending.writes) + len(scored)]
    figures = results[len(results) - len(figures):] if figures else None
    n, d = dataset.n_samples, dataset.n_features
    k, ct = params.n_components, params.covariance_type
    total = float(total)
    p = n_parameters(k, d, ct)
    metrics = {
        "n_samples": n, "n_features": d, "n_components": k, "covariance_type": ct,
        "n_iter": int(model.n_iter_), "converged": bool(model.converged_),
        "lower_bound": float(model.lower_bound_),
        "lower_bounds": [float(v) for v in model.lower_bounds_],
        "mean_log_likelihood": total / n,
        "bic": -2 * total + p * np.log(n), "aic": -2 * total + 2 * p,
        "weights": params.weights.tolist(), "cluster_sizes": sizes_array(sizes, k),
        "feature_names": list(dataset.feature_names) if dataset.feature_names else None,
        "input": dataset.description,
        "outputs": {"predictions": posixpath.basename(pending.path) if pending.path else None,
                    "model": "model"},
        "versions": library_versions(),
        **extra,
    }
    metrics["timings"] = {**extra.get("timings", {}), "predict": time.perf_counter() - t0}
    if previous is not None:
        metrics["drift"] = drift(previous[0], previous[1], model, float(before[0]), total, n)
    if figures is not None:
        from ..numerics.predict import predict_block
        from .report import write_report

        x_sum, x_cross, points = figures
        metrics["report"] = write_report(
            pub.staging_url, metrics, model,
            {"total": x_sum, "cross": x_cross, "n": n, "center": params.center,
             "points": points, "labels": predict_block(points, params)},
            output.storage_options)
    write_model_files(model, posixpath.join(pub.staging_url, "model"),
                      {k_: metrics[k_] for k_ in ("n_samples", "bic", "aic", "cluster_sizes")},
                      output.storage_options)
    return metrics


def _cluster(spec_cluster: dict, client, reporter: Reporter):
    """The given client, or a connection made from the job's cluster section."""
    import contextlib

    if client is not None:
        return contextlib.nullcontext(client)
    return connect(reporter=reporter, **spec_cluster)


def checkpoint_url(output_url: str) -> str:
    """Where a job's checkpoint lives: a hidden file next to its output."""
    parent, name = posixpath.split(output_url.rstrip("/"))
    return posixpath.join(parent, f".{name}.checkpoint.json")


def _previous_run(spec: JobSpec) -> dict | None:
    """The metrics of an output this very job already published, else None."""
    import json

    import fsspec

    url, so = spec.output.path, spec.output.storage_options
    if spec.output.overwrite or not is_published(url, so):
        return None
    fs, path = fsspec.core.url_to_fs(url, **so)
    try:
        metrics = json.loads(fs.cat_file(posixpath.join(path, "metrics.json")))
    except (FileNotFoundError, ValueError):
        return None
    same = metrics.get("job", {}).get("fingerprint") == spec.fingerprint()
    return metrics if same else None


def _fit_with_checkpoint(model, dataset: Dataset, ckpt: Checkpoint,
                         reporter: Reporter) -> None:
    state = ckpt.restore()
    if state is not None:
        done = [0 if r is None else r.n_iter for r in state.restarts]
        reporter.event("resume", f"resuming from {ckpt.url}: iterations done per restart "
                       f"{done}", n_iter=min(done), iterations=done)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(dataset.X, callback=reporter.iteration, checkpoint=ckpt)
    for w in caught:
        if issubclass(w.category, ConvergenceWarning):
            reporter.event("warning", f"warning: {w.message}", warning=str(w.message))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if dataset.feature_names:
        model.feature_names_in_ = np.asarray(dataset.feature_names, dtype=object)


def _previous_model(spec: JobSpec, dataset: Dataset, reporter: Reporter):
    """(path, model) of this job's previous published run, for warm start and drift."""
    from ..estimator import load_model

    if spec.model.init_params == "previous" and spec.model.is_sweep:
        raise ValueError("init_params: previous starts one model from the last one; a "
                         "sweep of several candidates cannot: use kmeans for sweeps.")
    path = previous_output(spec)
    if path is None:
        if spec.model.init_params == "previous":
            reporter.event("warm-start", "no previous run of this job is published: "
                           "starting from k-means", previous=None)
        return None
    model = load_model(path, storage_options=spec.output.storage_options)
    if model.n_features_in_ != dataset.n_features:
        if spec.model.init_params == "previous":
            raise ValueError(f"The previous run {path} has {model.n_features_in_} features; "
                             f"this input has {dataset.n_features}: select the same columns.")
        reporter.event("drift", f"no drift section: the previous run {path} used "
                       f"{model.n_features_in_} features, this one {dataset.n_features}",
                       previous=path)
        return None
    if spec.model.init_params == "previous":
        reporter.event("warm-start", f"starting from the model published at {path}",
                       previous=path)
    return path, model


def _select(dataset: Dataset, spec: JobSpec, reporter: Reporter):
    """Fit every candidate of a sweep in shared passes; the best by the criterion."""
    from ..selection import select_model

    ks, cts = spec.model.candidates
    params = spec.model.estimator_params()
    for key in ("n_components", "covariance_type", "n_init"):
        params.pop(key)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        best, table = select_model(dataset.X, ks, cts, criterion=spec.model.criterion,
                                   n_init=spec.model.n_init, callback=reporter.iteration,
                                   **params)
    if dataset.feature_names:
        best.feature_names_in_ = np.asarray(dataset.feature_names, dtype=object)
    reporter.event("selected", f"selected k={best.n_components} {best.covariance_type} "
                   f"by {spec.model.criterion} among {len(table)} candidates in "
                   f"{table.attrs['passes']} passes", n_components=best.n_components,
                   covariance_type=best.covariance_type, passes=table.attrs["passes"])
    return best, {"criterion": spec.model.criterion, "passes": table.attrs["passes"],
                  "candidates": table.to_dict(orient="records")}


def run_job(spec: JobSpec, *, reporter: Reporter | None = None, client=None,
            restart: bool = False) -> dict:
    """Fit the model a job spec describes and publish its outputs.

    Resumes from the job's checkpoint when one exists for the same settings and input;
    an output this same job already published is left alone (its metrics returned).

    Parameters
    ----------
    spec : JobSpec
    reporter : Reporter, optional
        Where progress goes (silent by default).
    client : distributed.Client, optional
        Use this client instead of the job's cluster section.
    restart : bool, default=False
        Ignore (and replace) an existing checkpoint.

    Returns
    -------
    dict
        The metrics written to ``metrics.json``.
    """
    from ..estimator import GaussianMixture

    reporter = reporter or Reporter(quiet=True)
    t_start = time.perf_counter()
    out = spec.output
    previous = _previous_run(spec)
    if previous is not None:
        reporter.event("published", f"{out.path} is already published by this job; "
                       "nothing to do", path=out.path, already=True)
        return previous
    pub = Publication(out.path, overwrite=out.overwrite, storage_options=out.storage_options)
    pub.check()
    source = open_source(spec.input.path, **spec.input.source_options())
    with _cluster(spec.cluster.model_dump(), client, reporter) as client:
        t0 = time.perf_counter()
        dataset = source.load()
        smallest = min(spec.model.candidates[0])
        if dataset.n_samples < smallest:
            raise ValueError(
                f"The input has {dataset.n_samples} rows but n_components="
                f"{smallest}: use fewer components or more data."
            )
        reporter.event("input", f"input {spec.input.path}: {dataset.n_samples} rows x "
                       f"{dataset.n_features} features in {dataset.X.numblocks[0]} chunks",
                       **{k: dataset.description.get(k) for k in ("kind", "shape")})
        identity = {"job": spec.fingerprint(), "input": input_fingerprint(dataset)}
        ckpt = Checkpoint(checkpoint_url(out.path), identity, out.storage_options)
        if restart:
            ckpt.clear()
        ckpt.restore()  # refuse a mismatching checkpoint before any work
        dataset = _persist(client, dataset, spec.model.cache, reporter)
        t_load = time.perf_counter() - t0
        previous = _previous_model(spec, dataset, reporter)
        t0 = time.perf_counter()
        if spec.model.is_sweep:
            model, selection = _select(dataset, spec, reporter)
        else:
            params = spec.model.estimator_params()
            if previous is not None and spec.model.init_params == "previous":
                params.update(warm_start_params(previous[1], params["n_components"],
                                                params["covariance_type"],
                                                dataset.n_features))
            model, selection = GaussianMixture(**params), None
            _fit_with_checkpoint(model, dataset, ckpt, reporter)
        t_fit = time.perf_counter() - t0
        reporter.event("fit", f"fitted in {t_fit:.1f} s: {model.n_iter_} iterations, "
                       f"converged={model.converged_}, lower bound {model.lower_bound_:.6f}",
                       n_iter=model.n_iter_, converged=model.converged_,
                       lower_bound=model.lower_bound_, seconds=round(t_fit, 3))
        timings = {"load": t_load, "init": model.timings_["init"],
                   "iterations": model.timings_["iterations"], "fit": t_fit}
        extra = {"job": {"name": spec.name, "fingerprint": spec.fingerprint(),
                         "input_fingerprint": identity["input"]},
                 "timings": timings}
        if selection is not None:
            extra["selection"] = selection
        with pub:
            metrics = _publish_results(client, model, dataset, out, pub, reporter, extra,
                                       previous)
            metrics["timings"]["total"] = time.perf_counter() - t_start
            write_json(pub.staging_url, "metrics.json", metrics, out.storage_options)
        ckpt.clear()
    reporter.event("published", f"published {out.path}", path=out.path)
    return metrics


def input_fingerprint(dataset: Dataset) -> str:
    """SHA-256 of the input's description (location, shape, dtype, chunks, store facts)."""
    import hashlib
    import json

    text = json.dumps(dataset.description, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def predict_job(model_path: str, input_path: str, output: OutputSpec, *,
                source_options: dict | None = None, cluster: dict | None = None,
                reporter: Reporter | None = None, client=None) -> dict:
    """Score an input with a saved model and publish the per-row results.

    Returns
    -------
    dict
        The metrics written to ``metrics.json`` (no ``model/`` is written).
    """
    from ..estimator import load_model

    reporter = reporter or Reporter(quiet=True)
    t_start = time.perf_counter()
    model = load_model(model_path)
    pub = Publication(output.path, overwrite=output.overwrite,
                      storage_options=output.storage_options)
    pub.check()
    source = open_source(input_path, **(source_options or {}))
    with _cluster(cluster or {}, client, reporter) as client:
        dataset = source.load()
        if dataset.n_samples == 0:
            raise ValueError(f"The input {input_path} has no rows: check the path and filters.")
        if dataset.n_features != model.n_features_in_:
            raise ValueError(
                f"The input has {dataset.n_features} features but the model was fitted on "
                f"{model.n_features_in_}: select the same columns as when fitting."
            )
        names = getattr(model, "feature_names_in_", None)
        if names is not None and dataset.feature_names and list(names) != list(
                dataset.feature_names):
            raise ValueError(
                f"The input columns {list(dataset.feature_names)} differ from the model's "
                f"{list(names)}: pass --columns {','.join(names)}."
            )
        with pub:
            pending = predictions(dataset, model._params(), pub.staging_url,
                                  PredictionOptions(output.labels, output.probabilities,
                                                    output.log_likelihood, output.format),
                                  output.storage_options)
            *_, total, sizes = compute(
                client, [*pending.writes, pending.total_log_likelihood, pending.cluster_sizes],
                reporter, "scoring",
            )
            k = model.n_components
            metrics = {
                "n_samples": dataset.n_samples, "n_features": dataset.n_features,
                "n_components": k, "model": model_path,
                "mean_log_likelihood": float(total) / dataset.n_samples,
                "cluster_sizes": sizes_array(sizes, k), "input": dataset.description,
                "outputs": {"predictions": posixpath.basename(pending.path)
                            if pending.path else None},
                "versions": library_versions(),
                "timings": {"total": time.perf_counter() - t_start},
            }
            write_json(pub.staging_url, "metrics.json", metrics, output.storage_options)
    reporter.event("published", f"published {output.path}", path=output.path)
    return metrics
