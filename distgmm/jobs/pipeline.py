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
from ..io.publish import AlreadyPublished, Publication, sweep_stale
from .bounds import check_apart
from .cluster import connect
from .events import Reporter
from .failures import io_path
from .fit import fit_job_model
from .lease import Lease, lease_url, sweep_checkpoint_temps
from .load import check_model_input, checkpoint_url, load_input, open_dataset, open_input
from .outliers import check_outliers, outlier_stage
from .previous import already_published, previous_run
from .rerun import already_predicted, predict_fingerprint
from .score import prediction_options, score_rows, write_results
from .spec import JobSpec, OutputSpec
from .watchdog import check_chunk_fits, largest_chunk_bytes, watched

__all__ = ["checkpoint_url", "predict_job", "run_job"]


def _cluster(spec_cluster: dict, client, reporter: Reporter):
    """The given client, or a connection made from the job's cluster section."""
    if client is not None:
        return contextlib.nullcontext(client)
    spec_cluster = {k: v for k, v in spec_cluster.items() if k != "stall_timeout"}
    return connect(reporter=reporter, **spec_cluster)


def _publication(output: OutputSpec, job: str | None = None) -> Publication:
    """The output's publication, refused before any work if it cannot be published."""
    pub = Publication(output.path, overwrite=output.overwrite,
                      storage_options=output.storage_options, job=job)
    pub.check()  # this job's own unpublished leftover is fine: publishing replaces it
    return pub


@contextlib.contextmanager
def job_lease(spec: JobSpec, reporter: Reporter):
    """Hold the job's lease (waiting for a live holder), then sweep what interrupted
    runs of the job left: staging directories and temporary checkpoint files."""
    out = spec.output
    ckpt = checkpoint_url(out.path, out.checkpoint_dir)
    lease = Lease(lease_url(ckpt), spec.fingerprint(), storage_options=out.storage_options)
    lease.acquire(out.lease_wait, reporter)
    try:
        removed = (sweep_stale(out.path, out.storage_options)
                   + sweep_checkpoint_temps(ckpt, out.storage_options))
        if removed:
            reporter.event("sweep", f"removed {len(removed)} leftover(s) of an interrupted "
                           f"run: {', '.join(removed)}", removed=removed)
        yield lease
    finally:
        lease.release()


def _nothing_to_do(reporter: Reporter, path: str, metrics: dict, why: str = "") -> dict:
    reporter.event("published", f"{path} is already published by this job{why}; nothing "
                   "to do", path=path, already=True)
    return metrics


def run_job(spec: JobSpec, *, reporter: Reporter | None = None, client=None,
            restart: bool = False) -> dict:
    """Fit the model a job spec describes and publish its outputs.

    Resumes from the job's checkpoint when one exists for the same settings and input;
    an output this same job already published is left alone (its metrics returned),
    also when another run of the job published it first. One run of a job at a time
    holds its lease (:mod:`.lease`); a second waits for it.

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
        return _nothing_to_do(reporter, out.path, published)
    pub = _publication(out, spec.fingerprint())
    source = open_input(spec.input.path, spec.input.source_options())
    with job_lease(spec, reporter):
        if (published := already_published(spec)) is not None:  # the run we waited for
            return _nothing_to_do(reporter, out.path, published)
        with _cluster(spec.cluster.model_dump(), client, reporter) as client, watched(
                client, reporter, stall_timeout=spec.cluster.stall_timeout,
                chunk_bytes=int(spec.input.chunk_size)):
            try:
                metrics = _fit_and_publish(spec, source, client, reporter, restart, pub,
                                           t_start)
            except AlreadyPublished:
                return _nothing_to_do(reporter, out.path, already_published(spec) or {},
                                      " (another run of it published first)")
    reporter.event("published", f"published {out.path}", path=out.path)
    return metrics


def _fit_and_publish(spec: JobSpec, source, client, reporter: Reporter, restart: bool,
                     pub: Publication, t_start: float) -> dict:
    out = spec.output
    loaded = load_input(spec, source, client, reporter, restart=restart)
    prediction_options(out).resolve_format(loaded.dataset)  # refused: before the fit
    previous = previous_run(spec, loaded.dataset.n_features, reporter)
    check_outliers(spec, loaded.dataset)
    with io_path(loaded.checkpoint.url):  # a full disk names the checkpoint
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
    try:
        with io_path(out.path), pub:
            metrics = write_results(client, fitted.model, loaded.dataset, out, pub,
                                    reporter, run, previous)
            metrics["timings"]["total"] = time.perf_counter() - t_start
            write_json(pub.staging_url, "metrics.json", metrics, out.storage_options)
    finally:
        if pub.target_state() == "ours":  # published, by this run or by the winner
            loaded.checkpoint.clear()
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
    stall = (cluster or {}).get("stall_timeout") or 300.0
    with _cluster(cluster or {}, client, reporter) as client, watched(
            client, reporter, stall_timeout=stall,
            chunk_bytes=(source_options or {}).get("chunk_bytes")):
        dataset = open_dataset(source, input_path, reporter)
        check_chunk_fits(client, largest_chunk_bytes(dataset.X))
        check_model_input(model, dataset, input_path)
        prediction_options(output).resolve_format(dataset)
        with pub:
            metrics = score_rows(client, model, dataset, output, pub, reporter, model_path)
            metrics["job"] = {"fingerprint": fingerprint}
            metrics["timings"] = {"total": time.perf_counter() - t_start}
            write_json(pub.staging_url, "metrics.json", metrics, output.storage_options)
    reporter.event("published", f"published {output.path}", path=output.path)
    return metrics
