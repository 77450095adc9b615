"""The ``distgmm`` command: parses arguments and delegates to the runner.

Exit codes: 0 done; 2 bad input, options or job spec (one line on stderr, nothing
written); 74 I/O error (disk full, read-only, permissions); 75 transient infrastructure
failure (scheduler lost, workers dying beyond Dask's retries, stalled): rerunning is
safe; 78 memory sizing (change chunk size, worker memory or cache); 130 SIGINT; 143
SIGTERM. The table and its classifiers: :mod:`distgmm.jobs.failures`.
"""

from __future__ import annotations

import functools
import json
import logging
import sys

import click

from . import options

EXIT_OK, EXIT_BAD_INPUT, EXIT_TRANSIENT = 0, 2, 75


def exit_code_for(exc: BaseException) -> int:
    """The exit code of ``exc`` (see :mod:`distgmm.jobs.failures`); 1 if unexpected."""
    from .jobs.failures import classify

    failure = classify(exc)
    return 1 if failure is None else failure.code


def _message(exc: BaseException) -> str:
    from .jobs.failures import classify

    failure = classify(exc)
    return " ".join(str(exc).split()) if failure is None else failure.message


def _common(f):
    """--quiet, --log-format and --debug on every command."""

    @click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
    @click.option("--log-format", type=click.Choice(["text", "json"]), default="text",
                  show_default=True, help="Progress lines as text or one JSON object each.")
    @click.option("--debug", is_flag=True, help="Show the traceback of errors.")
    @functools.wraps(f)
    def wrapper(*args, quiet, log_format, debug, **kwargs):
        from .jobs.events import Reporter

        reporter = Reporter(quiet=quiet, log_format=log_format)
        if not debug:  # failures are reported once, as one line, by us
            for name in ("distributed", "asyncio"):  # asyncio: "Task exception was never
                logging.getLogger(name).setLevel(logging.CRITICAL)  # retrieved" on ^C
        from .io.interrupts import handle_signals

        try:
            with handle_signals():
                return f(*args, reporter=reporter, **kwargs)
        except (click.exceptions.ClickException, click.exceptions.Exit):
            raise
        except (Exception, KeyboardInterrupt) as exc:
            if debug:
                raise
            _exit_if_remote(exc, kwargs)
            code = exit_code_for(exc)
            if code == 1:
                raise
            if code == EXIT_OK:  # e.g. the same job is running elsewhere
                if not reporter.quiet:
                    click.echo(f"distgmm: {_message(exc)}", err=True)
                sys.exit(EXIT_OK)
            click.echo(f"distgmm: error: {_message(exc)}", err=True)
            sys.exit(code)

    return wrapper


def _exit_if_remote(exc: BaseException, kwargs: dict) -> None:
    """Object-store failures (credentials, unreachable endpoint): one line, 2 or 75."""
    from .io.remote_errors import classify_remote_error

    ctx = click.get_current_context(silent=True)
    urls = [kwargs.get(k) for k in ("input_path", "output", "model_path")]
    urls += ctx.meta.get("distgmm.urls", []) if ctx is not None else []
    found = classify_remote_error(exc, [u for u in urls if isinstance(u, str)])
    if found is None:
        return
    # async clients and coroutines of the failed request would print their own noise
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    sys.unraisablehook = lambda unraisable: None
    click.echo(f"distgmm: error: {found[1]}", err=True)
    sys.exit(found[0])


def _split(value: str | None):
    return None if not value else tuple(v.strip() for v in value.split(",") if v.strip())


_STORAGE_OPTION = click.option(
    "--storage-option", "storage_option", multiple=True, metavar="KEY=VALUE",
    help="fsspec/s3fs option for every URL (input, output, model), e.g. endpoint_url="
         "http://127.0.0.1:9000, anon=true, config_kwargs.connect_timeout=2; repeatable.")


def _storage_options(kw) -> dict:
    from .jobs.storage import parse_storage_options

    return parse_storage_options(kw.get("storage_option") or ())


def _input_options(f):
    for opt in reversed([
        click.option("--format", "input_format", type=click.Choice(
            options.INPUT_FORMATS), default="auto", show_default=True,
            help="Input format; auto looks at the suffix and directory contents."),
        click.option("--array", help="Path of the array inside a Zarr group."),
        click.option("--columns", help="Comma-separated feature columns (Parquet)."),
        click.option("--filter", "filters", multiple=True, metavar="EXPR",
                     help="Row filter \"COL OP VALUE\" (Parquet), e.g. \"date == "
                          "'2026-11-22'\"; repeat to AND several."),
        click.option("--id-column", help="Column carried to the outputs (Parquet)."),
        click.option("--passthrough", help="More comma-separated columns carried to the "
                     "outputs (Parquet)."),
        click.option("--chunk-size", default="128MiB", show_default=True,
                     help="Target size of a row chunk."),
        click.option("--table-version", help="Delta: read this table version; Icechunk: "
                     "this branch or tag."),
        click.option("--snapshot", help="Iceberg or Icechunk: read this snapshot id."),
        click.option("--as-of", metavar="TIMESTAMP", help="Tables: read the snapshot "
                     "current at this ISO timestamp, e.g. 2026-11-21T00:00:00Z."),
        _STORAGE_OPTION,
        click.option("--variables", help="Comma-separated data variables of an "
                     "xarray-written Zarr group (gridded input), one feature each or one "
                     "per position along --feature-dim."),
        click.option("--feature-dim", metavar="NAME", help="Dimension whose positions are "
                     "features (gridded Zarr); the other dimensions are stacked into rows."),
        click.option("--feature-axis", type=int, metavar="I", help="The feature dimension "
                     "by position, for an N-D Zarr array without dimension names."),
    ]):
        f = opt(f)
    return f


def _output_options(f):
    for opt in reversed([
        click.option("--output", "-o", required=True, metavar="DIR",
                     help="Output directory (published atomically, _SUCCESS last)."),
        click.option("--labels/--no-labels", default=True, show_default=True,
                     help="Write the most probable component of each row."),
        click.option("--probabilities", is_flag=True, help="Write per-component probabilities."),
        click.option("--log-likelihood", is_flag=True, help="Write per-row log-likelihood."),
        click.option("--report", is_flag=True, help="Write report.html and PNG figures "
                     "(needs the plot extra: matplotlib)."),
        click.option("--output-format", type=click.Choice(options.OUTPUT_FORMATS),
                     default="auto", show_default=True,
                     help="auto: Parquet for Parquet input, Zarr otherwise."),
        click.option("--overwrite", is_flag=True, help="Replace an existing output."),
        click.option("--output-table", metavar="URL", help="With --output-format delta or "
                     "icechunk: the table the predictions are committed to (default: inside "
                     "the output directory)."),
        click.option("--checkpoint-dir", metavar="DIR", help="Where the checkpoint and "
                     "the job's lease live (default: next to the output)."),
        click.option("--lease-wait", type=float, default=120.0, show_default=True,
                     metavar="SECONDS", help="How long a second run of the same job "
                     "waits for the first before exiting 0."),
    ]):
        f = opt(f)
    return f


def _cluster_options(f):
    for opt in reversed([
        click.option("--address", envvar="DASK_SCHEDULER_ADDRESS", metavar="ADDR",
                     help="Scheduler address (default: $DASK_SCHEDULER_ADDRESS, else an "
                          "embedded local cluster on 127.0.0.1)."),
        click.option("--n-workers", type=int, help="Workers of the embedded cluster."),
        click.option("--threads-per-worker", type=int,
                     help="Threads per worker of the embedded cluster."),
        click.option("--memory-limit", metavar="SIZE",
                     help="Memory per worker of the embedded cluster, e.g. 4GiB."),
        click.option("--stall-timeout", type=float, default=300.0, show_default=True,
                     metavar="SECONDS", help="Stop (saying why) when no task finishes "
                     "for this long."),
    ]):
        f = opt(f)
    return f


def _restart_option(f):
    return click.option("--restart", is_flag=True,
                        help="Ignore the checkpoint of an earlier, interrupted run.")(f)


def _input_section(path, kw) -> dict:
    return {"path": path, "format": kw["input_format"], "array": kw["array"],
            "columns": _split(kw["columns"]), "filters": list(kw["filters"]),
            "id_column": kw["id_column"], "passthrough": _split(kw["passthrough"]) or (),
            "chunk_size": kw["chunk_size"], "version": kw.get("table_version"),
            "snapshot": kw.get("snapshot"), "as_of": kw.get("as_of"),
            "variables": _split(kw["variables"]), "feature_dim": kw["feature_dim"],
            "feature_axis": kw["feature_axis"], "storage_options": _url_options(path, kw)}


def _url_options(path, kw) -> dict:
    from .jobs.storage import for_path

    return for_path(path, _storage_options(kw))


def _output_section(kw) -> dict:
    return {"path": kw["output"], "format": kw["output_format"], "labels": kw["labels"],
            "probabilities": kw["probabilities"], "log_likelihood": kw["log_likelihood"],
            "report": kw.get("report", False),
            "overwrite": kw["overwrite"], "table": kw.get("output_table"),
            "storage_options": _url_options(kw["output"], kw),
            "checkpoint_dir": kw["checkpoint_dir"], "lease_wait": kw["lease_wait"]}


def _cluster_section(kw) -> dict:
    return {k: kw[k] for k in ("address", "n_workers", "threads_per_worker", "memory_limit",
                               "stall_timeout")}


def _print_result(reporter, metrics: dict, output: str) -> None:
    if reporter.quiet:
        return
    if reporter.log_format == "json":
        click.echo(json.dumps({"output": output, "metrics": "metrics.json",
                               "n_samples": metrics["n_samples"],
                               "cluster_sizes": metrics["cluster_sizes"]}))
    else:
        click.echo(f"{output}: {metrics['n_samples']} rows, cluster sizes "
                   f"{metrics['cluster_sizes']}")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="distgmm")
def cli():
    """Gaussian-mixture clustering (EM) of Zarr, Parquet and .npy data on a Dask cluster.

    Without --address or DASK_SCHEDULER_ADDRESS every command starts an embedded local
    cluster on 127.0.0.1. Exit codes: 0 done, 2 bad input or spec (nothing written),
    74 I/O error, 75 cluster failure (safe to rerun), 78 memory sizing, 130/143
    interrupted/terminated.
    """


def _em_options(f):
    """EM settings shared by fit and sweep."""
    for opt in reversed([
        click.option("--max-iter", type=int, default=100, show_default=True),
        click.option("--tol", type=float, default=1e-3, show_default=True,
                     help="Stop when the mean log-likelihood changes by less."),
        click.option("--reg-covar", type=float, default=1e-6, show_default=True),
        click.option("--n-init", type=int, default=1, show_default=True,
                     help="Restarts (sharing every pass over the data); the best is kept."),
        click.option("--init", "init_params", type=click.Choice(
            options.INIT_PARAMS), default="kmeans",
            show_default=True),
        click.option("--random-state", type=int, default=0, show_default=True),
        click.option("--cache", type=click.Choice(options.CACHES),
                     default="auto", show_default=True,
                     help="Keep the data in cluster memory (auto: if it fits)."),
        click.option("--compute-dtype", type=click.Choice(options.COMPUTE_DTYPES),
                     default="float64", show_default=True,
                     help="Precision of the E-step arithmetic (float32: numpy tiles, "
                          "results to ~1e-5; faster only without the compiled kernel)."),
        click.option("--missing", type=click.Choice(options.MISSING), default="error",
                     show_default=True,
                     help="Rows holding NaN (or the store's fill value): refuse them, or "
                          "omit them from the fit (label -1)."),
    ]):
        f = opt(f)
    return f


def _run_model_job(input_path, model: dict, kw: dict, where: str, restart: bool,
                   reporter) -> None:
    from .jobs.bounds import check_cli_output
    from .jobs.pipeline import run_job
    from .jobs.spec import JobSpec

    em = ("max_iter", "tol", "reg_covar", "n_init", "init_params", "random_state", "cache",
          "compute_dtype", "missing")
    raw = {
        "input": _input_section(input_path, kw),
        "model": {**model, **{k: kw[k] for k in em}},
        "output": _output_section(kw),
        "cluster": _cluster_section(kw),
    }
    spec = JobSpec.from_mapping(raw, where=where)
    check_cli_output(spec.output.path)
    _print_result(reporter, run_job(spec, reporter=reporter, restart=restart),
                  spec.output.path)


def _outliers_option(f):
    return click.option("--outliers", type=float, metavar="FRACTION",
                        help="Flag this share of rows (0 < FRACTION < 0.5) with the lowest "
                             "density: an exact threshold pass after the fit, an outlier "
                             "column in the predictions, saved with the model.")(f)


@cli.command()
@click.argument("input_path", metavar="INPUT")
@click.option("--n-components", "-k", type=int, required=True, help="Number of components.")
@click.option("--covariance-type", type=click.Choice(options.COVARIANCE_TYPES),
              default="full", show_default=True)
@click.option("--estimator", "kind", type=click.Choice(options.ESTIMATORS), default="gmm",
              show_default=True, help="gmm: EM (GaussianMixture); bayes: variational "
              "BayesianGaussianMixture, -k an upper bound, extra components switched off.")
@click.option("--weight-concentration-prior-type", type=click.Choice(
    options.WEIGHT_CONCENTRATION_PRIOR_TYPES), default="dirichlet_process",
    show_default=True, help="--estimator bayes: the weights' prior.")
@click.option("--weight-concentration-prior", type=float, default=None,
              help="--estimator bayes: its concentration (> 0) [default: 1/k].")
@_em_options
@_outliers_option
@_input_options
@_output_options
@_cluster_options
@_restart_option
@_common
def fit(input_path, n_components, covariance_type, kind, restart, reporter, **kw):
    """Fit a mixture to INPUT and publish model/, metrics.json and labels to --output.

    INPUT is a Zarr store (directory, .zip or URL), a Parquet file or dataset, or a
    .npy file. The EM state is checkpointed after every iteration next to the output
    (.OUTPUT.checkpoint.json); a rerun of the same command resumes from it.
    """
    model = {"n_components": n_components, "covariance_type": covariance_type, "kind": kind,
             "outliers": kw.pop("outliers")}
    for key, default in (("weight_concentration_prior_type", "dirichlet_process"),
                         ("weight_concentration_prior", None)):
        value = kw.pop(key)
        if value != default:  # the spec refuses a prior with --estimator gmm
            model[key] = value
    _run_model_job(input_path, model, kw, "distgmm fit", restart, reporter)


@cli.command()
@click.argument("input_path", metavar="INPUT")
@click.option("--n-components", "-k", required=True, metavar="K",
              help="Candidates: a range 1..10 or a list 2,4,8.")
@click.option("--covariance-type", default="full", show_default=True, metavar="TYPES",
              help="Comma-separated covariance types to try, e.g. full,diag.")
@click.option("--criterion", type=click.Choice(options.CRITERIA), default="bic",
              show_default=True, help="Keep the candidate with the lowest value.")
@_em_options
@_input_options
@_output_options
@_cluster_options
@_common
def sweep(input_path, n_components, covariance_type, criterion, reporter, **kw):
    """Fit every candidate in shared passes over INPUT; publish the best by BIC/AIC.

    metrics.json lists every candidate's lower bound, BIC, AIC, iterations and whether it
    converged (or why it failed).
    """
    _run_model_job(input_path, {"n_components": n_components,
                                "covariance_type": covariance_type, "criterion": criterion},
                   kw, "distgmm sweep", False, reporter)


def _with_storage_options(spec, items):
    from .jobs.storage import parse_storage_options, with_storage_options

    spec = with_storage_options(spec, parse_storage_options(items))
    # named by one-line object-store errors (see _exit_if_remote)
    click.get_current_context().meta["distgmm.urls"] = [spec.input.path, spec.output.path]
    return spec


@cli.command()
@click.argument("job", type=click.Path(dir_okay=False))
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="Fill a {template} (date=2026-11-22) or override a setting "
                   "(model.n_components=5); repeatable.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output.")
@click.option("--address", metavar="ADDR", help="Scheduler address or scheduler file "
              "(overrides the spec's cluster.address; default: the spec's, else "
              "$DASK_SCHEDULER_ADDRESS, else an embedded local cluster).")
@click.option("--n-workers", type=int, help="Workers of the embedded cluster.")
@click.option("--memory-limit", metavar="SIZE", help="Memory per embedded worker.")
@click.option("--estimator", "kind", type=click.Choice(options.ESTIMATORS), default=None,
              help="Override the spec's model.kind (gmm or bayes).")
@_outliers_option
@_STORAGE_OPTION
@_restart_option
@_common
def run(job, settings, overwrite, address, n_workers, memory_limit, kind, restart, reporter,
        outliers=None, storage_option=()):
    """Run the job spec JOB (.yaml or .toml).

    A run resumes from its checkpoint after a failure; rerunning a job whose output
    it already published does nothing and exits 0.
    """
    from .jobs.bounds import check_cli_output
    from .jobs.pipeline import run_job
    from .jobs.spec import JobSpec

    if overwrite:
        settings = (*settings, "output.overwrite=true")
    if kind is not None:
        settings = (*settings, f"model.kind={kind}")
    for key, value in (("address", address), ("n_workers", n_workers),
                       ("memory_limit", memory_limit)):
        if value is not None:
            settings = (*settings, f"cluster.{key}={value}")
    if outliers is not None:  # overrides the spec's model.outliers
        settings = (*settings, f"model.outliers={outliers!r}")
    spec = JobSpec.from_file(job, settings)
    spec = _with_storage_options(spec, storage_option)
    check_cli_output(spec.output.path)
    _print_result(reporter, run_job(spec, reporter=reporter, restart=restart),
                  spec.output.path)


@cli.command()
@click.argument("job", type=click.Path(dir_okay=False))
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="As for `distgmm run`.")
@_STORAGE_OPTION
@_common
def validate(job, settings, reporter, storage_option=()):
    """Check the job spec JOB without running it (exit 0 if valid, 2 if not)."""
    from .jobs.bounds import check_cli_output
    from .jobs.spec import JobSpec

    spec = _with_storage_options(JobSpec.from_file(job, settings), storage_option)
    check_cli_output(spec.output.path)
    if not reporter.quiet:
        ks, cts = spec.model.candidates
        click.echo(f"{job}: valid; input {spec.input.path}, k={ks} {cts}, output "
                   f"{spec.output.path}")


@cli.command()
@click.argument("model_path", metavar="MODEL")
@click.argument("input_path", metavar="INPUT")
@_input_options
@_output_options
@_cluster_options
@_common
def predict(model_path, input_path, reporter, **kw):
    """Label INPUT with the saved MODEL (a model/ directory or a fit's output)."""
    from .jobs.bounds import check_cli_output
    from .jobs.pipeline import predict_job
    from .jobs.spec import InputSpec, OutputSpec, validate_section

    where = "distgmm predict"
    source = validate_section(InputSpec, _input_section(input_path, kw), where)
    output = validate_section(OutputSpec, _output_section(kw), where)
    check_cli_output(output.path)
    metrics = predict_job(model_path, source.path, output,
                          source_options=source.source_options(),
                          cluster=_cluster_section(kw), reporter=reporter,
                          model_storage_options=_url_options(model_path, kw))
    _print_result(reporter, metrics, output.path)


@cli.command()
@click.argument("model_path", metavar="MODEL")
@click.option("--n-samples", "-n", type=click.IntRange(min=1), required=True,
              help="Rows to draw.")
@click.option("--output", "-o", required=True, metavar="OUT.zarr|OUT.parquet",
              help="Where the rows go (published atomically).")
@click.option("--output-format", type=click.Choice(options.OUTPUT_FORMATS),
              default="auto", show_default=True, help="auto: from the suffix of --output.")
@click.option("--random-state", type=click.IntRange(min=0), default=0, show_default=True,
              help="The same seed gives the same rows whatever --chunk-rows.")
@click.option("--component", is_flag=True, help="Also write each row's component.")
@click.option("--chunk-rows", type=click.IntRange(min=1),
              help="Rows per chunk, one task each (default: about 64 MiB of rows).")
@click.option("--overwrite", is_flag=True, help="Replace an existing output.")
@_cluster_options
@_common
def sample(model_path, n_samples, output, output_format, random_state, component,
           chunk_rows, overwrite, reporter, **kw):
    """Draw N rows from the saved MODEL on the cluster, chunk by chunk, into --output."""
    from .jobs.sample import sample_job

    summary = sample_job(model_path, n_samples, output, fmt=output_format,
                         random_state=random_state, component=component,
                         chunk_rows=chunk_rows, overwrite=overwrite,
                         cluster=_cluster_section(kw), reporter=reporter)
    if not reporter.quiet:
        click.echo(json.dumps(summary) if reporter.log_format == "json" else
                   f"{output}: {summary['n_samples']} rows in {summary['n_chunks']} chunks")


_KERNEL_NAMES = {"compiled-avx2": "compiled, AVX2 + FMA build",
                 "compiled": "compiled, generic build",
                 "numpy": "numpy (no compiled kernel: about half the speed)"}


def _print_system(reporter) -> None:
    from .jobs.system import system_info

    info = system_info()
    if reporter.log_format == "json":
        click.echo(json.dumps(info, indent=2))
        return
    kernel, cpu = info["kernel"], info["kernel"]["cpu"]
    name = _KERNEL_NAMES.get(kernel["kernel"], kernel["kernel"])
    click.echo(f"kernel: {name}; {kernel['reason']}")
    if kernel["module"]:
        click.echo(f"kernel module: {kernel['module']}")
    features = "unknown" if cpu["features"] is None else " ".join(cpu["features"]) or "none"
    click.echo(f"cpu: {cpu['machine']}, features {features}")
    click.echo(f"python: {info['python']} on {info['platform']}")
    click.echo("versions: " + ", ".join(f"{k} {v or 'not installed'}"
                                        for k, v in info["versions"].items()))


@cli.command()
@click.argument("model_path", metavar="MODEL", required=False)
@click.option("--system", is_flag=True, help="Describe this installation instead: which "
              "E-step kernel runs (compiled AVX2, compiled generic or numpy) and why, the "
              "CPU features and the library versions.")
@_STORAGE_OPTION
@_common
def info(model_path, system, reporter, storage_option=()):
    """Describe the saved MODEL, or with --system this installation.

    --log-format json prints either as one JSON document.
    """
    if system:
        if model_path is not None:
            raise click.UsageError("give either MODEL or --system, not both")
        _print_system(reporter)
        return
    if model_path is None:
        raise click.UsageError("missing MODEL (or --system for this installation)")
    from .io.model import read_model, read_model_metadata
    from .jobs.storage import for_path, parse_storage_options

    options = for_path(model_path, parse_storage_options(storage_option))
    read_model(model_path, storage_options=options)  # arrays and history checked too
    meta = read_model_metadata(model_path, options)
    meta.pop("_root", None)
    if reporter.log_format == "json":
        click.echo(json.dumps(meta, indent=2))
        return
    fit = meta["fit"]
    click.echo(f"{model_path}: {meta['n_components']} components, {meta['covariance_type']} "
               f"covariance, {meta['n_features']} features")
    if meta.get("feature_names"):
        click.echo(f"features: {', '.join(meta['feature_names'])}")
    click.echo(f"fit: {fit['n_iter']} iterations, converged={fit['converged']}, "
               f"lower bound {fit['lower_bound']:.6f}")
    if meta.get("kind") == "bayes":
        click.echo("kind: bayes (BayesianGaussianMixture: variational lower bound)")
    for key in ("n_samples", "bic", "aic", "cluster_sizes"):
        if key in meta.get("metrics", {}):
            click.echo(f"{key}: {meta['metrics'][key]}")
    if meta.get("outliers"):
        click.echo(f"outliers: fraction {meta['outliers']['fraction']}, log-likelihood "
                   f"threshold {meta['outliers']['threshold']:.6f}")
    click.echo("versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()))


@cli.command()
@click.option("--workdir", default="distgmm-demo", show_default=True,
              help="Where the synthetic data (data.zarr) and the output go.")
@click.option("--n-samples", type=int, default=1_000_000, show_default=True)
@click.option("--n-features", type=int, default=8, show_default=True)
@click.option("--n-components", "-k", type=int, default=5, show_default=True)
@click.option("--covariance-type", type=click.Choice(options.COVARIANCE_TYPES),
              default="full", show_default=True)
@click.option("--random-state", type=int, default=0, show_default=True)
@_cluster_options
@_common
def demo(reporter, stall_timeout, **kw):
    """Generate a synthetic Zarr dataset and cluster it end to end (the quickstart)."""
    from .jobs.demo import run_demo

    run_demo(reporter=reporter, **kw)


def main(argv: list[str] | None = None) -> int:
    """Console entry point: usage errors are one line and exit 2, like bad input."""
    try:
        code = cli.main(args=argv, prog_name="distgmm", standalone_mode=False)
    except click.exceptions.UsageError as e:
        where = e.ctx.command_path if e.ctx is not None else "distgmm"
        click.echo(f"distgmm: error: {e.format_message()} (see `{where} --help`)", err=True)
        sys.exit(EXIT_BAD_INPUT)
    except click.exceptions.Abort:
        sys.exit(130)
    sys.exit(code or 0)


if __name__ == "__main__":
    main()
