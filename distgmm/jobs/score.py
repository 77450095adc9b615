"""Stage 4 of a job: one pass scores every row and writes the per-row results; then
metrics, the optional report and the model go into the staging directory.

Published output directory::

    OUTPUT/
      model/                 loadable with distgmm.load_model
      metrics.json
      predictions.zarr/      or predictions.parquet/ (labels, probabilities, log-likelihood)
      report.html            with --report
      _SUCCESS               written last
"""

from __future__ import annotations

import posixpath
import time
from dataclasses import replace

import numpy as np

from ..io.model import write_model_files
from ..io.outputs import PredictionOptions, predictions, sizes_array
from ..io.publish import Publication
from ..io.sources import Dataset
from ..numerics.predict import predict_block
from ..parallel.missing import masked_result
from ..parallel.predict import score_samples_dask
from .compute import compute
from .events import Reporter
from .metrics import fit_metrics, outlier_metrics, scoring_metrics
from .previous import PreviousRun, drift

REPORT_POINTS = 4000


def prediction_options(output, model=None) -> PredictionOptions:
    """The per-row results an output section asks for (an ``outlier`` column too when
    ``model`` has an outlier threshold)."""
    opts = PredictionOptions(output.labels, output.probabilities, output.log_likelihood,
                             output.format)
    threshold = getattr(model, "outlier_threshold_", None)
    return opts if threshold is None else replace(opts, outlier_threshold=threshold)


def table_target(output, staging_url: str, job: dict | None = None):
    """Where ``delta``/``icechunk`` results are committed (None for file formats): the
    output's ``table``, else inside the output directory."""
    from ..io.outputs import PREDICTIONS
    from ..io.table_outputs import TableTarget
    from ..options import TABLE_OUTPUT_FORMATS

    if output.format not in TABLE_OUTPUT_FORMATS:
        return None
    url = output.table or posixpath.join(staging_url, PREDICTIONS[output.format])
    ident = {k: (job or {}).get(k) for k in ("name", "fingerprint", "input_fingerprint")}
    return TableTarget(url, dict(output.partition), ident, dict(output.storage_options))


def _committed(pending, done: list, metrics: dict) -> None:
    """Commit table results (after the pass) and say so in the metrics."""
    if pending.commit is not None:
        metrics["outputs"]["table"] = pending.commit(done[:len(pending.writes)])


def _report_terms(dataset: Dataset, center: np.ndarray, model=None) -> list:
    """Lazy sum and cross-product of ``X - center`` (principal axes without
    cancellation far from the origin), a row sample, the complete rows' count and the
    sample's complete rows, for the report (gridded input: and a label map)."""
    import dask.array as da

    from ..io.gridded import report_terms
    from ..parallel.missing import complete_rows
    from .report import _pyplot

    _pyplot()  # fail before the pass if matplotlib is missing
    X = dataset.X.astype(np.float64)
    keep = complete_rows(X)  # rows omitted for missing values add nothing
    Xc = (X - center) if getattr(model, "missing", "error") != "omit" else \
        da.where(keep[:, None], X - center, 0.0)
    n = dataset.n_samples
    rng = np.random.default_rng(0)
    idx = np.sort(rng.choice(n, min(n, REPORT_POINTS), replace=False))
    grid = report_terms(dataset, model) if dataset.grid is not None and model else []
    return [Xc.sum(axis=0), Xc.T @ Xc, X[idx], keep.sum(), keep[idx], *grid]


def write_results(client, model, dataset: Dataset, output, pub: Publication,
                  reporter: Reporter, run: dict, previous: PreviousRun | None = None) -> dict:
    """The scoring pass, the report and ``model/`` into the staging directory.

    ``run`` (the job's identity, a sweep's selection) goes into the metrics and the
    report; ``previous`` adds the drift section, scored in the same pass.

    Returns
    -------
    dict
        The metrics; ``run["timings"]``, when given, gains the scoring pass's
        ``predict`` seconds.
    """
    t0 = time.perf_counter()
    params = model.fitted_params()
    pending = predictions(dataset, params, pub.staging_url,
                          replace(prediction_options(output, model), missing=model.missing),
                          output.storage_options,
                          table_target(output, pub.staging_url, run.get("job")))
    reporter.event("predict", "scoring every row under the final model"
                   + (" and writing the results" if pending.path else ""))
    scored = [pending.total_log_likelihood, pending.cluster_sizes]
    if pending.outliers is not None:
        scored.append(pending.outliers)
    if previous is not None:  # omitted rows (NaN) count for neither model
        before_ll = (masked_result(score_samples_dask, dataset.X,
                                   previous.model.fitted_params(), np.nan)
                     if model.missing == "omit" else
                     score_samples_dask(dataset.X, previous.model.fitted_params()))
        scored.append(np.nansum(before_ll) if model.missing == "omit" else before_ll.sum())
    figures = _report_terms(dataset, params.center, model) if output.report else []
    done = compute(client, [*pending.writes, *scored, *figures], reporter,
                   "writing results")
    results = done[len(pending.writes):]
    total, sizes, *before = results[:len(scored)]
    flagged = None if pending.outliers is None else before.pop(0)
    metrics = {**fit_metrics(model, dataset, float(total), sizes, pending.path),
               **outlier_metrics(model, flagged, sum(sizes_array(sizes, model.n_components))),
               **run}
    _committed(pending, done, metrics)
    if "timings" in metrics:  # the scoring pass, as before drift, report and model/
        metrics["timings"] = {**metrics["timings"], "predict": time.perf_counter() - t0}
    if previous is not None:
        metrics["drift"] = drift(previous, model, float(before[0]), float(total),
                                 sum(sizes_array(sizes, model.n_components)))
    if figures:
        metrics["report"] = _write_report(model, dataset, metrics, results[len(scored):],
                                          pub, output)
    write_model_files(model, posixpath.join(pub.staging_url, "model"),
                      {k: metrics[k] for k in ("n_samples", "bic", "aic", "cluster_sizes")},
                      output.storage_options)
    return metrics


def _write_report(model, dataset: Dataset, metrics: dict, figures: list,
                  pub: Publication, output) -> dict:
    from .report import write_report

    params = model.fitted_params()
    x_sum, x_cross, points, n_complete, complete, *label_map = figures
    points = points[complete]
    return write_report(
        pub.staging_url, metrics, model,
        {"total": x_sum, "cross": x_cross, "n": n_complete, "center": params.center,
         "points": points, "labels": predict_block(points, params)},
        output.storage_options,
        gridded={"grid": dataset.grid, "label_map": label_map[0] if label_map else None}
        if dataset.grid is not None else None)


def score_rows(client, model, dataset: Dataset, output, pub: Publication,
               reporter: Reporter, model_path: str) -> dict:
    """Score an input with a saved model into the staging directory (no ``model/``)."""
    pending = predictions(dataset, model.fitted_params(), pub.staging_url,
                          replace(prediction_options(output, model), missing=model.missing),
                          output.storage_options, table_target(output, pub.staging_url))
    counted = [] if pending.outliers is None else [pending.outliers]
    done = compute(
        client, [*pending.writes, pending.total_log_likelihood, pending.cluster_sizes,
                 *counted], reporter, "scoring")
    results = done[len(pending.writes):]
    metrics = {**scoring_metrics(dataset, model_path, model.n_components, float(results[0]),
                                 results[1], pending.path, missing=model.missing),
               **outlier_metrics(model, results[2] if counted else None,
                                 sum(sizes_array(results[1], model.n_components)))}
    _committed(pending, done, metrics)
    return metrics

