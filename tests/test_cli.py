"""The `distgmm` command against a real cluster: as a subprocess, or its main() in this
process where only the command's own checks are under test."""

import json
import os
import re
from pathlib import Path
from types import SimpleNamespace

import click
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zarr
from click.testing import CliRunner
from conftest import blobs, invoke_main, run_cli

from distgmm import GaussianMixture, load_model, options
from distgmm.cli import cli
from distgmm.jobs.spec import JobSpec

JOBS = Path(__file__).resolve().parent.parent / "jobs"


@pytest.fixture(scope="module")
def zarr_input(tmp_path_factory):
    X = blobs(n=3000, d=3, k=3, seed=5)[0]
    path = tmp_path_factory.mktemp("in") / "x.zarr"
    z = zarr.create_array(store=str(path), shape=X.shape, chunks=(500, 3), dtype="f8")
    z[:] = X
    return str(path), X


def write_lake(root: Path, days=("2026-11-01", "2026-11-02"), n=400, seed=0, shift=0.0,
               centers=((10.0, 1.0, 0.0), (50.0, 5.0, 8.0), (90.0, 2.0, -6.0))):
    """A hive-partitioned events dataset, one partition per day."""
    rng = np.random.default_rng(seed)
    centers = np.asarray(centers)
    frames = []
    for day in days:
        lab = rng.integers(0, 3, n)
        f = centers[lab] + rng.normal(size=(n, 3)) + shift
        frames.append(pd.DataFrame({
            "event_id": [f"{day}/{i}" for i in range(n)],
            "amount": pd.array(np.round(f[:, 0]).astype(int), dtype="Int64"),
            "duration": f[:, 1], "distance": f[:, 2],
            "country": rng.choice(["de", "fr"], n), "date": day,
        }))
    df = pd.concat(frames, ignore_index=True)
    pq.write_to_dataset(pa.Table.from_pandas(df, preserve_index=False), root / "events",
                        partition_cols=["date"])
    return df


def assert_bad_input(r, out: Path, pattern: str):
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("distgmm: error: "), r.stderr
    assert re.search(pattern, lines[0]), lines[0]
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if ".staging-" in p.name]


def test_help_documents_commands():
    runner = CliRunner()
    top = runner.invoke(cli, ["--help"]).output
    for command in ("fit", "run", "validate", "predict", "info", "demo"):
        assert command in top
    fit_help = runner.invoke(cli, ["fit", "--help"]).output
    for option in ("--n-components", "--output", "--covariance-type", "--columns", "--array",
                   "--filter", "--id-column", "--address", "--overwrite", "--log-format"):
        assert option in fit_help


def _choices(command) -> dict:
    return {p.name: tuple(p.type.choices) for p in command.params
            if isinstance(p.type, click.Choice)}


def test_cli_choices_are_the_options_lists():
    """Every choice list of the CLI is distgmm.options' (none spelled by hand), and every
    default is a valid choice equal to the job spec's default."""
    from distgmm.jobs.spec import ModelSpec, OutputSpec

    expected = {"covariance_type": options.COVARIANCE_TYPES, "init_params": options.INIT_PARAMS,
                "cache": options.CACHES, "compute_dtype": options.COMPUTE_DTYPES,
                "criterion": options.CRITERIA, "input_format": options.INPUT_FORMATS,
                "output_format": options.OUTPUT_FORMATS, "log_format": ("text", "json"),
                "kind": options.ESTIMATORS,
                "weight_concentration_prior_type": options.WEIGHT_CONCENTRATION_PRIOR_TYPES,
                "missing": options.MISSING}
    commands = cli.commands
    fit, sweep, demo = commands["fit"], commands["sweep"], commands["demo"]
    for command, names in ((fit, ["covariance_type", "init_params", "cache", "compute_dtype",
                                  "input_format", "output_format", "log_format", "kind",
                                  "weight_concentration_prior_type", "missing"]),
                           (sweep, ["criterion", "init_params", "cache", "compute_dtype",
                                    "input_format", "output_format", "log_format", "missing"]),
                           (demo, ["covariance_type", "log_format"]),
                           (commands["predict"], ["input_format", "output_format",
                                                  "log_format"])):
        got = _choices(command)
        assert sorted(got) == sorted(names), command.name
        for name in names:
            assert got[name] == tuple(expected[name]), (command.name, name)
    spec_defaults = {**{k: f.default for k, f in ModelSpec.model_fields.items()},
                     "output_format": OutputSpec.model_fields["format"].default}
    for command in (fit, sweep):
        for p in command.params:
            if isinstance(p.type, click.Choice) and p.name in spec_defaults:
                assert p.default == spec_defaults[p.name], (command.name, p.name)


def test_info_system_says_which_kernel_runs():
    from distgmm.numerics import kernel_info

    kernel = kernel_info()
    r = CliRunner().invoke(cli, ["info", "--system"])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    names = {"compiled-avx2": "compiled, AVX2 + FMA build",
             "compiled": "compiled, generic build", "numpy": "numpy (no compiled kernel"}
    assert lines[0].startswith(f"kernel: {names[kernel['kernel']]}")
    assert kernel["reason"] in lines[0]
    assert any(line.startswith("cpu: ") for line in lines)
    versions = next(line for line in lines if line.startswith("versions: "))
    for package in ("distgmm", "numpy", "scipy", "dask", "distributed", "scikit-learn",
                    "zarr", "pyarrow"):
        assert f" {package} " in versions
    assert f"numpy {np.__version__}" in versions

    r = CliRunner().invoke(cli, ["info", "--system", "--log-format", "json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.output)
    assert info["kernel"] == kernel and info["versions"]["numpy"] == np.__version__
    assert set(info["versions"]) == {"distgmm", "numpy", "scipy", "dask", "distributed",
                                     "scikit-learn", "zarr", "pyarrow"}


def test_info_system_without_the_kernel(monkeypatch):
    from distgmm.numerics import suffstats

    monkeypatch.setattr(suffstats, "HAVE_COMPILED", False)
    monkeypatch.setattr(suffstats, "_NO_KERNEL_REASON", "ImportError: no _estep")
    r = CliRunner().invoke(cli, ["info", "--system"])
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[0] == (
        "kernel: numpy (no compiled kernel: about half the speed); the compiled kernel is "
        "unavailable (built with DISTGMM_NO_COMPILED_KERNEL=1?): ImportError: no _estep")


def test_info_needs_a_model_or_system(tmp_path):
    r = CliRunner().invoke(cli, ["info"])
    assert r.exit_code == 2 and "missing MODEL (or --system" in r.output
    r = CliRunner().invoke(cli, ["info", str(tmp_path), "--system"])
    assert r.exit_code == 2 and "either MODEL or --system" in r.output


def test_fit_zarr_publishes_model_labels_metrics(scheduler_address, zarr_input, tmp_path):
    path, X = zarr_input
    out = tmp_path / "out"
    r = run_cli("fit", path, "-k", 3, "--output", out, "--probabilities", "--log-likelihood",
                "--chunk-size", "12KB", address=scheduler_address)
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(out)) == ["_SUCCESS", "metrics.json", "model", "predictions.zarr"]
    model = load_model(str(out / "model"))
    ref = GaussianMixture(3, random_state=0).fit(X)
    np.testing.assert_allclose(model.means_, ref.means_, rtol=1e-8)
    assert model.n_iter_ == ref.n_iter_
    g = zarr.open_group(str(out / "predictions.zarr"), mode="r")
    assert g["label"].chunks == (500,)
    np.testing.assert_array_equal(g["label"][:], model.predict(X))
    np.testing.assert_allclose(g["probabilities"][:], model.predict_proba(X), rtol=1e-12)
    np.testing.assert_allclose(g["log_likelihood"][:], model.score_samples(X), rtol=1e-12)
    m = json.loads((out / "metrics.json").read_text())
    assert m["cluster_sizes"] == np.bincount(model.predict(X), minlength=3).tolist()
    assert m["bic"] == pytest.approx(model.bic(X), rel=1e-10)
    assert m["aic"] == pytest.approx(model.aic(X), rel=1e-10)
    assert (m["n_samples"], m["n_features"], m["n_iter"]) == (3000, 3, model.n_iter_)
    assert len(m["timings"]["iterations"]) == model.n_iter_
    assert m["lower_bounds"] == model.lower_bounds_
    assert len(re.findall(r"^iter +\d+ +lower bound", r.stderr, re.M)) == model.n_iter_
    assert json.loads((out / "_SUCCESS").read_text())["files"]

    # the same job again: already published, nothing to do; another job: refused
    before = (out / "metrics.json").read_text()
    r = run_cli("fit", path, "-k", 3, "--output", out, "--probabilities", "--log-likelihood",
                "--chunk-size", "12KB", address=scheduler_address)
    assert r.returncode == 0 and "already published by this job" in r.stderr
    r = run_cli("fit", path, "-k", 2, "--output", out, address=scheduler_address)
    assert r.returncode == 2 and "--overwrite" in r.stderr
    assert (out / "metrics.json").read_text() == before
    assert not (out.parent / ".out.checkpoint.json").exists()
    r = run_cli("fit", path, "-k", 2, "--output", out, "--overwrite", "--quiet",
                address=scheduler_address)
    assert r.returncode == 0 and r.stderr == "" and r.stdout == ""
    assert load_model(str(out)).n_components == 2

    scored = tmp_path / "scored"
    r = run_cli("predict", out, path, "--output", scored, "--quiet", address=scheduler_address)
    assert r.returncode == 0, r.stderr
    np.testing.assert_array_equal(
        zarr.open_group(str(scored / "predictions.zarr"), mode="r")["label"][:],
        load_model(str(out)).predict(X))

    r = run_cli("info", out / "model")
    assert r.returncode == 0 and "2 components, full covariance, 3 features" in r.stdout


def test_parquet_lake_ids_line_up_and_predict_reuses_the_model(scheduler_address, tmp_path):
    df = write_lake(tmp_path)
    out = tmp_path / "out"
    r = run_cli("fit", tmp_path / "events", "-k", 3, "--output", out,
                "--filter", "date == '2026-11-02'", "--columns", "amount,duration,distance",
                "--id-column", "event_id", "--passthrough", "country", "--probabilities",
                "--log-format", "json", address=scheduler_address)
    assert r.returncode == 0, r.stderr
    events = [json.loads(line) for line in r.stderr.splitlines()]
    model = load_model(str(out))
    assert sum(e["event"] == "iteration" for e in events) == model.n_iter_
    assert list(model.feature_names_in_) == ["amount", "duration", "distance"]
    got = pd.read_parquet(out / "predictions.parquet")
    assert list(got.columns) == ["event_id", "country", "label", "prob_0", "prob_1", "prob_2"]
    day = df[df.date == "2026-11-02"].set_index("event_id")
    assert set(got.event_id) == set(day.index)
    rows = day.loc[got.event_id]
    feats = rows[["amount", "duration", "distance"]].astype(float)
    np.testing.assert_array_equal(got.label.to_numpy(), model.predict(feats))
    assert (got.country.to_numpy() == rows.country.to_numpy()).all()

    out2 = tmp_path / "scored"
    r = run_cli("predict", out / "model", tmp_path / "events", "--output", out2,
                "--filter", "date == '2026-11-02'", "--columns", "amount,duration,distance",
                "--id-column", "event_id", address=scheduler_address)
    assert r.returncode == 0, r.stderr
    again = pd.read_parquet(out2 / "predictions.parquet")
    assert list(again.columns) == ["event_id", "label"]
    np.testing.assert_array_equal(again.label.to_numpy(), got.label.to_numpy())
    assert (out2 / "_SUCCESS").exists() and not (out2 / "model").exists()


def _variables(path: Path) -> set:
    return set(re.findall(r"\{([A-Za-z_]\w*)\}", path.read_text()))


@pytest.mark.parametrize("job", sorted(p.name for p in JOBS.iterdir()))
def test_every_example_job_validates(job):
    path = JOBS / job
    settings = [f"{v}=/somewhere" if v != "date" else "date=2026-11-22"
                for v in sorted(_variables(path))]
    spec = JobSpec.from_file(str(path), settings)
    assert min(spec.model.candidates[0]) >= 1 and spec.output.path
    r = CliRunner().invoke(cli, ["validate", str(path), *sum((["--set", s] for s in settings),
                                                            [])])
    assert r.exit_code == 0 and "valid" in r.output


def test_demo_then_quickstart_job(scheduler_address, tmp_path):
    # the newcomer's path, on the embedded cluster (no address anywhere). Fewer rows than
    # the default start's sample (20,000): the data is sampled whole, so each of the
    # sweep's 16 candidates starts from 4 local fits, not 16 (the sampled path of larger
    # data is test_init's)
    n = 10_000
    r = run_cli("demo", "--n-samples", n, "--n-workers", 2, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "dashboard http://127.0.0.1:" in r.stderr
    assert (tmp_path / "distgmm-demo" / "output" / "_SUCCESS").exists()
    dist = float(re.search(r"fitted mean: ([\d.]+)", r.stderr).group(1))
    assert dist < 0.2
    r = run_cli("run", JOBS / "quickstart.yaml", cwd=tmp_path, address=scheduler_address)
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "distgmm-demo" / "quickstart-output" / "metrics.json")
                   .read_text())
    assert m["job"]["name"] == "quickstart" and sum(m["cluster_sizes"]) == n
    r = run_cli("run", JOBS / "sweep.yaml", cwd=tmp_path, address=scheduler_address)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "distgmm-demo" / "sweep-output"
    m = json.loads((out / "metrics.json").read_text())
    assert m["n_components"] == 5 and len(m["selection"]["candidates"]) == 16
    assert (out / "report.html").exists() and (out / "report" / "selection.png").exists()


def test_zarr_group_job(scheduler_address, tmp_path):
    X = blobs(n=2000, d=4, k=4, seed=3)[0]
    g = zarr.open_group(str(tmp_path / "sensors.zarr"), mode="w", zarr_format=2)
    g.create_array("features/scaled", shape=X.shape, chunks=(300, 4), dtype="f8")[:] = X
    r = run_cli("run", JOBS / "zarr-group.toml", "--set", f"root={tmp_path}",
                "--set", "model.n_init=1", address=scheduler_address)
    assert r.returncode == 0, r.stderr
    model = load_model(str(tmp_path / "clusters"))
    assert model.covariance_type == "diag" and model.n_components == 8
    labels = zarr.open_group(str(tmp_path / "clusters" / "predictions.zarr"), mode="r")["label"]
    np.testing.assert_array_equal(labels[:], model.predict(X))


def test_daily_lake_job_publishes_each_date(scheduler_address, tmp_path):
    write_lake(tmp_path, days=("2026-11-21", "2026-11-22"))
    for day in ("2026-11-21", "2026-11-22"):
        r = run_cli("run", JOBS / "daily-lake.yaml", "--set", f"lake={tmp_path}",
                    "--set", f"date={day}", address=scheduler_address)
        assert r.returncode == 0, r.stderr
        got = pd.read_parquet(tmp_path / "clusters" / "events" / f"date={day}" /
                              "predictions.parquet")
        assert got.event_id.str.startswith(day).all() and len(got) == 400


# ------------------------------------------------------------------ bad input: exit 2
@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    X = np.random.default_rng(0).normal(size=(600, 2))
    X[321, 1] = np.nan
    zarr.create_array(store=str(d / "nan.zarr"), shape=X.shape, chunks=(100, 2),
                      dtype="f8")[:] = X
    zarr.create_array(store=str(d / "tiny.zarr"), shape=(3, 2), chunks=(3, 2),
                      dtype="f8")[:] = np.arange(6.0).reshape(3, 2)
    write_lake(d)
    (d / "unknown.yaml").write_text(
        "input: {path: x.zarr}\nmodel: {n_components: 2, n_componets: 3}\noutput: {path: o}\n")
    (d / "evil.yaml").write_text(
        "input: !!python/object/apply:os.system ['echo pwned']\nmodel: {n_components: 2}\n"
        "output: {path: o}\n")
    return d


@pytest.mark.parametrize("case, args, pattern", [
    ("nan", ["fit", "{d}/nan.zarr", "-k", 2], r"NaN.*row 321"),
    ("string", ["fit", "{d}/events", "-k", 2, "--columns", "amount,country"],
     r"Non-numeric feature column\(s\) \['country'\]"),
    ("empty", ["fit", "{d}/events", "-k", 2, "--columns", "amount",
               "--filter", "date == '1999-01-01'"], r"No rows .* after the filters"),
    ("k>n", ["fit", "{d}/tiny.zarr", "-k", 5], r"3 rows but n_components=5"),
    ("column", ["fit", "{d}/events", "-k", 2, "--columns", "amount,speed"],
     r"\['speed'\] not in"),
    ("key", ["run", "{d}/unknown.yaml"],
     r"unknown key 'model.n_componets'; allowed here: n_components, covariance_type"),
    ("tag", ["run", "{d}/evil.yaml"], r"python/object.*refused"),
    ("k<1", ["fit", "{d}/tiny.zarr", "-k", 0], r"model.n_components"),
])
def test_bad_input_exits_2_with_one_line(scheduler_address, bad_inputs, tmp_path, case, args,
                                         pattern):
    out = tmp_path / "out"
    args = [str(a).format(d=bad_inputs) for a in args] + ["--quiet"]
    if args[0] == "fit":
        args += ["--output", out]
    else:
        args += ["--set", f"output.path={out}"]
    if case in ("nan", "column", "tag"):  # a worker's error, a Parquet schema's, a spec's
        r = run_cli(*args, address=scheduler_address)  # the real command and its stderr
    else:  # the same main() in this process: no second start-up (1.5 s of imports)
        code, err = invoke_main([*args, "--address", scheduler_address], silent=True)
        r = SimpleNamespace(returncode=code, stderr=err)
    assert_bad_input(r, out, pattern)
    assert not (Path("/tmp") / "pwned").exists()


def test_unreachable_scheduler_exits_75(zarr_input, tmp_path, monkeypatch):
    monkeypatch.setenv("DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT", "2s")
    out = tmp_path / "out"
    r = run_cli("fit", zarr_input[0], "-k", 2, "--output", out, "--quiet",
                "--address", "tcp://127.0.0.1:9")
    assert r.returncode == 75, r.stderr
    assert r.stderr.startswith("distgmm: error: cannot reach the Dask scheduler at "
                               "tcp://127.0.0.1:9")
    assert len(r.stderr.strip().splitlines()) == 1 and not out.exists()


def test_usage_errors_are_one_line():
    r = run_cli("fit", "x.zarr", "--bogus")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "distgmm: error: No such option '--bogus'. (see `distgmm fit --help`)"] or (
        "No such option '--bogus'" in r.stderr and len(r.stderr.strip().splitlines()) == 1)


def test_embedded_cluster_keeps_worker_errors_off_stderr(tmp_path):
    X = np.random.default_rng(0).normal(size=(400, 2))
    X[77, 0] = np.inf
    np.save(tmp_path / "x.npy", X)
    r = run_cli("fit", tmp_path / "x.npy", "-k", 2, "--output", tmp_path / "out", "--quiet",
                "--n-workers", 1)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [r.stderr.strip()]
    assert "first at row 77, column 0" in r.stderr


def test_sweep_publishes_the_best_candidate(scheduler_address, tmp_path):
    X = blobs(n=3000, d=2, k=4, seed=1, spread=0.7)[0]
    np.save(tmp_path / "x.npy", X)
    out = tmp_path / "out"
    r = run_cli("sweep", tmp_path / "x.npy", "-k", "1..6", "--covariance-type", "full,diag",
                "--n-init", 2, "--output", out, "--log-format", "json",
                address=scheduler_address)
    assert r.returncode == 0, r.stderr
    m = json.loads((out / "metrics.json").read_text())
    table = pd.DataFrame(m["selection"]["candidates"])
    assert len(table) == 12 and m["n_components"] == 4
    best = table.loc[table.bic.idxmin()]
    assert (best.n_components, best.covariance_type) == (4, m["covariance_type"])
    # separate fits would need at least the EM iterations plus a scoring pass each
    assert m["selection"]["passes"] < 0.6 * (table.n_iter.sum() + len(table))
    model = load_model(str(out))
    assert model.n_components == 4 and model.n_init == 2
    events = [json.loads(line) for line in r.stderr.splitlines()]
    assert {e.get("candidate") for e in events if e["event"] == "iteration"} >= {
        "k=1 full", "k=6 diag"}


def _events(result, name):
    events = [json.loads(line) for line in result.stderr.splitlines()]
    return [{k: v for k, v in e.items() if k not in ("event", "time")}
            for e in events if e["event"] == name]


def test_two_days_of_a_data_lake_warm_start_and_drift(scheduler_address, tmp_path):
    # overlapping clusters: EM needs many iterations after k-means
    near = ((10.0, 0.0, 0.0), (12.0, 1.5, 0.0), (10.0, 1.5, 1.5))
    write_lake(tmp_path, days=("2026-11-21",), n=3000, seed=1, centers=near)
    write_lake(tmp_path, days=("2026-11-22",), n=3000, seed=2, shift=0.1, centers=near)
    common = ["--set", f"lake={tmp_path}", "--set", "model.tol=1e-4", "--set",
              "model.n_components=3", "--log-format", "json"]
    day1 = run_cli("run", JOBS / "daily-lake.yaml", "--set", "date=2026-11-21", *common,
                   address=scheduler_address)
    assert day1.returncode == 0, day1.stderr
    assert _events(day1, "warm-start") == [{"previous": None}]
    day2 = run_cli("run", JOBS / "daily-lake.yaml", "--set", "date=2026-11-22", *common,
                   address=scheduler_address)
    assert day2.returncode == 0, day2.stderr
    out1 = tmp_path / "clusters" / "events" / "date=2026-11-21"
    out2 = tmp_path / "clusters" / "events" / "date=2026-11-22"
    assert _events(day2, "warm-start") == [{"previous": str(out1)}]
    m2 = json.loads((out2 / "metrics.json").read_text())
    drift = m2["drift"]
    assert drift["previous_output"] == str(out1)
    assert drift["log_likelihood_gain"] > 0  # today's model fits today's data better
    assert 0.05 < drift["max_mean_shift"] < 1.0  # the data moved by 0.1 per feature
    # a k-means|| cold start of the same day needs more iterations (the default start,
    # a mixture already fitted to a sample of the day, can need fewer)
    cold = run_cli("run", JOBS / "daily-lake.yaml", "--set", "date=2026-11-22", *common,
                   "--set", "model.init_params=k-means||", "--set",
                   f"output.path={tmp_path}/cold", address=scheduler_address)
    assert cold.returncode == 0, cold.stderr
    m_cold = json.loads((tmp_path / "cold" / "metrics.json").read_text())
    assert m2["n_iter"] < m_cold["n_iter"], (m2["n_iter"], m_cold["n_iter"])
    # the same date again: already published, nothing done
    again = run_cli("run", JOBS / "daily-lake.yaml", "--set", "date=2026-11-22", *common,
                    address=scheduler_address)
    assert again.returncode == 0
    assert _events(again, "published") == [{"path": str(out2), "already": True}]
    assert json.loads((out2 / "metrics.json").read_text()) == m2
