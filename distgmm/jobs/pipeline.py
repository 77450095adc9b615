"""A job as a straight pipeline of named stages, each in a module of its own.

``run_job``: resolve the spec and the previous run (:mod:`.previous`) -> open the input
(:mod:`.load`) -> fit, with checkpoints (:mod:`.fit`) -> score and publish
(:mod:`.score`, :mod:`distgmm.io.publish`). ``predict_job``: open -> score -> publish.
Each stage takes and returns plain frozen objects.
"""

from __future__ import annotations

import contextlib
import time

from ..bayesian import load_model  # either kind of model
from ..io.outputs import check_column_clash, write_json
from ..io.publish import Publication
from .bounds import check_apart
from .cluster import connect
from .events import Reporter
from .fit import fit_job_model
from .load import check_model_input, checkpoint_url, load_input, open_dataset, open_input
from .outliers import check_outliers, outlier_stage
from .previous import already_published, previous_run
from .rerun import already_predicted, predict_fingerprint
from .score import score_rows, write_results
from .spec import JobSpec, OutputSpec

__all__ = ["checkpoint_url", "predict_job", "run_job"]


def _cluster(spec_cluster: dict, client, reporter: Reporter):
    """The given client, or a connection made from the job's cluster section."""
    if client is not None:
        return contextlib.nullcontext(client)
    return connect(reporter=reporter, **spec_cluster)


def _publication(output: OutputSpec) -> Publication:
    """The output's publication, refused before any work if it cannot be published."""
    pub = Publication(output.path, overwrite=output.overwrite,
                      storage_options=output.storage_options)
    pub.check()
    return pub


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
    reporter = reporter or Reporter(quiet=True)
    t_start, out = time.perf_counter(), spec.output
    if (published := already_published(spec)) is not None:
        reporter.event("published", f"{out.path} is already published by this job; "
                       "nothing to do", path=out.path, already=True)
        return published
    pub = _publication(out)
    source = open_input(spec.input.path, spec.input.source_options())
    with _cluster(spec.cluster.model_dump(), client, reporter) as client:
        loaded = load_input(spec, source, client, reporter, restart=restart)
        previous = previous_run(spec, loaded.dataset.n_features, reporter)
        check_outliers(spec, loaded.dataset)
        fitted = fit_job_model(spec, loaded, previous, reporter)
        outlier_seconds = outlier_stage(spec, fitted.model, loaded.dataset, reporter)
        run = {"job": {"name": spec.name, "fingerprint": spec.fingerprint(),
                       "input_fingerprint": loaded.input_fingerprint},
               "timings": {"load": loaded.seconds, "init": fitted.model.timings_["init"],
                           "iterations": fitted.model.timings_["iterations"],
                           "fit": fitted.seconds}}
        if fitted.selection is not None:
            run["selection"] = fitted.selection
        if outlier_seconds is not None:
            run["timings"]["outliers"] = outlier_seconds
        with pub:
            metrics = write_results(client, fitted.model, loaded.dataset, out, pub,
                                    reporter, run, previous)
            metrics["timings"]["total"] = time.perf_counter() - t_start
            write_json(pub.staging_url, "metrics.json", metrics, out.storage_options)
        loaded.checkpoint.clear()
    reporter.event("published", f"published {out.path}", path=out.path)
    return metrics


def predict_job(model_path: str, input_path: str, output: OutputSpec, *,
                source_options: dict | None = None, cluster: dict | None = None,
                reporter: Reporter | None = None, client=None,
                model_storage_options: dict | None = None) -> dict:
    """Score an input with a saved model and publish the per-row results.

    Parameters
    ----------
    model_path : str
        A saved model directory (or a run's output holding ``model/``).
    input_path : str
        The data to score (any source :func:`distgmm.open_source` opens).
    output : OutputSpec
        Where and what to write.
    source_options : dict, optional
        Options of the input source (columns, filters, format, ...).
    cluster : dict, optional
        The cluster section (address, workers) when no ``client`` is given.
    reporter : Reporter, optional
    client : distributed.Client, optional
    model_storage_options : dict, optional
        fsspec options for a remote ``model_path``.

    Returns
    -------
    dict
        The metrics written to ``metrics.json`` (no ``model/`` is written).
    """
    reporter = reporter or Reporter(quiet=True)
    t_start = time.perf_counter()
    for path, what in ((input_path, "input"), (model_path, "model")):
        check_apart(path, output.path, what)
    model = load_model(model_path, storage_options=model_storage_options)
    check_column_clash(((source_options or {}).get("id_column"),
                        *((source_options or {}).get("passthrough") or ())), model.n_components)
    fingerprint = predict_fingerprint(model, input_path, source_options or {}, output)
    if (published := already_predicted(output, fingerprint)) is not None:
        reporter.event("published", f"{output.path} is already published by this "
                       "prediction job; nothing to do", path=output.path, already=True)
        return published
    pub = _publication(output)
    source = open_input(input_path, source_options or {})
    with _cluster(cluster or {}, client, reporter) as client:
        dataset = open_dataset(source, input_path, reporter)
        check_model_input(model, dataset, input_path)
        with pub:
            metrics = score_rows(client, model, dataset, output, pub, reporter, model_path)
            metrics["job"] = {"fingerprint": fingerprint}
            metrics["timings"] = {"total": time.perf_counter() - t_start}
            write_json(pub.staging_url, "metrics.json", metrics, output.storage_options)
    reporter.event("published", f"published {output.path}", path=output.path)
    return metrics
