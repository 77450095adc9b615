"""run_job / predict_job in process, on the shared LocalCluster."""

import json

import numpy as np
import pandas as pd
import pytest
import zarr
from conftest import blobs

from distgmm import GaussianMixture, JobSpec, load_model, predict_job, run_job
from distgmm.jobs.spec import OutputSpec


@pytest.fixture
def npy_input(tmp_path):
    X = blobs(n=2000, d=3, k=3, seed=4)[0]
    np.save(tmp_path / "x.npy", X)
    return str(tmp_path / "x.npy"), X


def test_npy_to_parquet_keeps_row_numbers(client, npy_input, tmp_path):
    path, X = npy_input
    spec = JobSpec.from_mapping({
        "input": {"path": path, "chunk_rows": 300},
        "model": {"n_components": 3, "covariance_type": "tied"},
        "output": {"path": str(tmp_path / "out"), "format": "parquet", "probabilities": True,
                   "log_likelihood": True},
    })
    metrics = run_job(spec, client=client)
    model = load_model(str(tmp_path / "out"))
    ref = GaussianMixture(3, covariance_type="tied", random_state=0).fit(X)
    np.testing.assert_allclose(model.covariances_, ref.covariances_, rtol=1e-8)
    got = pd.read_parquet(tmp_path / "out" / "predictions.parquet")
    assert got.index.name == "row" and list(got.index) == list(range(2000))
    np.testing.assert_array_equal(got.label, model.predict(X))
    np.testing.assert_allclose(got[["prob_0", "prob_1", "prob_2"]], model.predict_proba(X),
                               rtol=1e-12)
    np.testing.assert_allclose(got.log_likelihood, model.score_samples(X), rtol=1e-12)
    on_disk = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert on_disk["cluster_sizes"] == metrics["cluster_sizes"]
    assert on_disk["mean_log_likelihood"] == pytest.approx(model.score(X), rel=1e-12)
    assert on_disk["input"]["kind"] == "npy" and on_disk["input"]["chunks"][0] == 300


def test_predict_job_checks_features(client, npy_input, tmp_path):
    path, X = npy_input
    gm = GaussianMixture(2, random_state=0).fit(X[:, :2])
    gm.save(str(tmp_path / "m"))
    out = OutputSpec(path=str(tmp_path / "p"))
    with pytest.raises(ValueError, match="X has 3 features, but GaussianMixture is expecting 2 "
                       "features as input. The model was fitted on other columns"):
        predict_job(str(tmp_path / "m"), path, out, client=client)
    assert not (tmp_path / "p").exists()
    np.save(tmp_path / "two.npy", X[:, :2])
    predict_job(str(tmp_path / "m"), str(tmp_path / "two.npy"), out, client=client)
    labels = zarr.open_group(str(tmp_path / "p" / "predictions.zarr"), mode="r")["label"][:]
    np.testing.assert_array_equal(labels, gm.predict(X[:, :2]))


def test_parquet_output_names_global_rows_and_nothing_is_left(client, tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "pq").mkdir()
    for i in range(3):
        df = pd.DataFrame(rng.normal(size=(50, 2)), columns=["a", "b"])
        if i == 2:
            df.loc[3, "a"] = np.nan
        df.to_parquet(tmp_path / "pq" / f"p{i}.parquet", index=False)
    gm = GaussianMixture(2, random_state=0).fit(rng.normal(size=(200, 2)))
    gm.save(str(tmp_path / "m"))
    out = OutputSpec(path=str(tmp_path / "out"))
    with pytest.raises(ValueError, match="first at row 103, column 0"):
        predict_job(str(tmp_path / "m"), str(tmp_path / "pq"), out, client=client)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m", "pq"]


def test_a_failed_write_leaves_no_staging_behind(client, tmp_path):
    import time

    rng = np.random.default_rng(0)
    X = rng.normal(size=(240_000, 4))
    X[5, 1] = np.nan
    np.save(tmp_path / "x.npy", X)
    GaussianMixture(30, max_iter=2, random_state=0).fit(X[6:3000]).save(str(tmp_path / "m"))
    out = OutputSpec(path=str(tmp_path / "out"), probabilities=True, log_likelihood=True)
    with pytest.raises(ValueError, match="first at row 5"):
        predict_job(str(tmp_path / "m"), str(tmp_path / "x.npy"), out, client=client,
                    source_options={"chunk_rows": 20_000})
    time.sleep(1.0)  # a straggling chunk write would have recreated staging by now
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m", "x.npy"]


def test_predict_refuses_an_empty_input(client, tmp_path):
    GaussianMixture(2, random_state=0).fit(np.random.default_rng(0).normal(size=(50, 2))).save(
        str(tmp_path / "m"))
    z = zarr.create_array(store=str(tmp_path / "e.zarr"), shape=(0, 2), chunks=(10, 2),
                          dtype="f8")
    assert z.shape == (0, 2)
    with pytest.raises(ValueError, match="has no rows"):
        predict_job(str(tmp_path / "m"), str(tmp_path / "e.zarr"),
                    OutputSpec(path=str(tmp_path / "out")), client=client)
    assert not (tmp_path / "out").exists()


def test_metrics_json_is_strict_json():
    import datetime

    from distgmm.io.outputs import _json_safe

    assert _json_safe({"d": datetime.date(2026, 11, 22), "x": np.float64("nan"),
                       "v": np.arange(2), "b": b"k"}) == {
        "d": "2026-11-22", "x": None, "v": [0, 1], "b": "b'k'"}


@pytest.mark.parametrize("job", ["run", "predict"])
def test_bad_input_is_reported_before_any_cluster_is_reached(tmp_path, job):
    # an unreachable scheduler would turn bad input (exit 2) into a transient failure
    # (exit 75) that orchestrators retry: the input is opened first
    import time

    cluster = {"address": "tcp://127.0.0.1:1"}
    t0 = time.perf_counter()
    with pytest.raises(FileNotFoundError, match="nowhere"):
        if job == "run":
            run_job(JobSpec.from_mapping({
                "input": {"path": str(tmp_path / "nowhere")},
                "model": {"n_components": 2}, "output": {"path": str(tmp_path / "out")},
                "cluster": cluster}))
        else:
            X = np.random.default_rng(0).normal(size=(50, 2))
            GaussianMixture(2, random_state=0).fit(X).save(str(tmp_path / "m"))
            predict_job(str(tmp_path / "m"), str(tmp_path / "nowhere"),
                        OutputSpec(path=str(tmp_path / "p")), cluster=cluster)
    assert time.perf_counter() - t0 < 10  # no connection attempt (its timeout is 30 s)
    assert not (tmp_path / "out").exists() and not (tmp_path / "p").exists()


def test_metrics_keep_their_key_order(client, npy_input, tmp_path):
    # people diff metrics.json between runs: the keys stay where earlier releases put them
    path, X = npy_input
    spec = JobSpec.from_mapping({"name": "order", "input": {"path": path},
                                 "model": {"n_components": 2, "max_iter": 5},
                                 "output": {"path": str(tmp_path / "out")}})
    metrics = run_job(spec, client=client)
    assert list(metrics) == [
        "n_samples", "n_features", "n_components", "covariance_type", "n_iter", "converged",
        "lower_bound", "lower_bounds", "mean_log_likelihood", "bic", "aic", "weights",
        "cluster_sizes", "feature_names", "input", "outputs", "versions", "job", "timings"]
    assert list(metrics["timings"]) == ["load", "init", "iterations", "fit", "predict",
                                        "total"]
    on_disk = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert list(on_disk) == list(metrics)
    scored = predict_job(str(tmp_path / "out"), path, OutputSpec(path=str(tmp_path / "p")),
                         client=client)
    assert list(scored) == ["n_samples", "n_features", "n_components", "model",
                            "mean_log_likelihood", "cluster_sizes", "input", "outputs",
                            "versions", "job", "timings"]  # job: the rerun fingerprint
