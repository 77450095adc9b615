"""missing="omit": rows holding NaN weigh nothing and get label -1 / NaN results."""

import json

import dask.array as da
import numpy as np
import pytest
import zarr
from conftest import blobs, invoke_main, run_cli, sklearn_start

from distgmm import GaussianMixture
from distgmm.jobs.spec import JobSpec


def _with_missing(seed=3, n_bad=120):
    X = blobs(n=1500, d=3, k=3, seed=seed)[0]
    rng = np.random.default_rng(seed)
    bad = rng.choice(len(X), n_bad, replace=False)
    Xn = X.copy()
    Xn[bad, rng.integers(0, 3, n_bad)] = np.nan
    keep = ~np.isnan(Xn).any(axis=1)
    return Xn, keep


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("ct", ["full", "diag"])
@pytest.mark.parametrize("kind", ["numpy", "dask"])
def test_omit_equals_fit_on_complete_rows(ct, kind):
    Xn, keep = _with_missing()
    start = sklearn_start(Xn[keep], 3, ct)
    kw = dict(covariance_type=ct, tol=0, max_iter=8, **start)
    ref = GaussianMixture(3, **kw).fit(Xn[keep])
    data = Xn if kind == "numpy" else da.from_array(Xn, chunks=200)
    gm = GaussianMixture(3, missing="omit", **kw).fit(data)
    assert gm.n_omitted_ == (~keep).sum() > 0
    for attr in ("weights_", "means_", "covariances_"):
        np.testing.assert_allclose(getattr(gm, attr), getattr(ref, attr), rtol=1e-10,
                                   atol=1e-12)
    assert gm.lower_bound_ == pytest.approx(ref.lower_bound_, rel=1e-10)
    labels = np.asarray(gm.predict(data))
    np.testing.assert_array_equal(labels[keep], ref.predict(Xn[keep]))
    assert (labels[~keep] == -1).all()
    proba = np.asarray(gm.predict_proba(data))
    np.testing.assert_allclose(proba[keep], ref.predict_proba(Xn[keep]), rtol=1e-10,
                               atol=1e-14)
    assert np.isnan(proba[~keep]).all()
    ll = np.asarray(gm.score_samples(data))
    np.testing.assert_allclose(ll[keep], ref.score_samples(Xn[keep]), rtol=1e-10)
    assert np.isnan(ll[~keep]).all()
    assert gm.score(data) == pytest.approx(ref.score(Xn[keep]), rel=1e-10)
    assert gm.bic(data) == pytest.approx(ref.bic(Xn[keep]), rel=1e-10)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("init", ["kmeans", "random", "random_from_data", "k-means++"])
def test_every_initialiser_sees_complete_rows_only(init):
    # numpy input in one block: complete rows are numbered as the complete array's rows,
    # so every initialiser draws the same start and the fits agree
    Xn, keep = _with_missing(seed=5)
    kw = dict(init_params=init, random_state=0, tol=0, max_iter=5)
    ref = GaussianMixture(3, **kw).fit(Xn[keep])
    gm = GaussianMixture(3, missing="omit", **kw).fit(Xn)
    np.testing.assert_allclose(gm.means_, ref.means_, rtol=1e-10)
    np.testing.assert_allclose(gm.weights_, ref.weights_, rtol=1e-10)


def test_sample_weight_and_omit():
    Xn, keep = _with_missing(seed=7)
    w = np.random.default_rng(0).uniform(0.5, 2.0, len(Xn))
    start = sklearn_start(Xn[keep], 3, "full")
    ref = GaussianMixture(3, tol=0, max_iter=5, **start).fit(Xn[keep], sample_weight=w[keep])
    gm = GaussianMixture(3, tol=0, max_iter=5, missing="omit", **start).fit(
        da.from_array(Xn, chunks=300), sample_weight=w)
    np.testing.assert_allclose(gm.means_, ref.means_, rtol=1e-10)


def test_error_is_still_the_default():
    Xn, _ = _with_missing()
    with pytest.raises(ValueError, match="non-finite"):
        GaussianMixture(2).fit(Xn)


def test_bad_missing_value_names_the_choices():
    with pytest.raises(ValueError, match=r"missing='drop' is not one of \('error', 'omit'\)"):
        GaussianMixture(2, missing="drop").fit(np.zeros((10, 2)))


@pytest.mark.parametrize("n_rows_left, k", [(0, 2), (3, 4)])
def test_too_few_complete_rows(n_rows_left, k):
    X = np.full((40, 2), np.nan)
    X[:n_rows_left] = np.arange(2 * n_rows_left).reshape(-1, 2)
    with pytest.raises(ValueError, match=f"{40 - n_rows_left} of 40 rows that hold missing "
                                         f"values, {n_rows_left} rows remain"):
        GaussianMixture(k, missing="omit").fit(da.from_array(X, chunks=10))


def test_inf_is_still_an_error_with_omit():
    X = np.random.default_rng(0).normal(size=(50, 2))
    X[4, 1] = np.inf
    with pytest.raises(ValueError, match="non-finite"):
        GaussianMixture(2, missing="omit").fit(X)


def test_sweep_omits_too():
    from distgmm import select_model

    Xn, keep = _with_missing(seed=9)
    best, table = select_model(da.from_array(Xn, chunks=400), [2, 3], "diag",
                               random_state=0, missing="omit", max_iter=20)
    ref, ref_table = select_model(Xn[keep], [2, 3], "diag", random_state=0, max_iter=20)
    assert best.n_components == ref.n_components
    assert best.n_omitted_ == (~keep).sum()


def test_job_spec_takes_missing():
    spec = JobSpec.from_mapping({"input": {"path": "x.npy"},
                                 "model": {"n_components": 2, "missing": "omit"},
                                 "output": {"path": "out"}})
    assert spec.model.estimator_params()["missing"] == "omit"
    with pytest.raises(ValueError, match="missing"):
        JobSpec.from_mapping({"input": {"path": "x.npy"},
                              "model": {"n_components": 2, "missing": "skip"},
                              "output": {"path": "out"}})


def test_cli_omit_writes_minus_one_and_counts(tmp_path, scheduler_address):
    Xn, keep = _with_missing(seed=11)
    np.save(tmp_path / "x.npy", Xn)
    out = tmp_path / "out"
    r = run_cli("fit", str(tmp_path / "x.npy"), "-k", "3", "--missing", "omit", "-o",
                str(out), "--probabilities", "--log-likelihood", address=scheduler_address)
    assert r.returncode == 0, r.stderr
    n_bad = int((~keep).sum())
    assert f"{n_bad} rows omitted (missing values)" in r.stderr + r.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_omitted"] == n_bad
    assert sum(metrics["cluster_sizes"]) == keep.sum()
    g = zarr.open_group(str(out / "predictions.zarr"), mode="r")
    labels = g["label"][:]
    assert (labels[~keep] == -1).all() and (labels[keep] >= 0).all()
    assert np.isnan(g["probabilities"][:][~keep]).all()
    assert np.isnan(g["log_likelihood"][:][~keep]).all()
    assert np.isfinite(g["log_likelihood"][:][keep]).all()
    assert np.isfinite(metrics["mean_log_likelihood"]) and np.isfinite(metrics["bic"])


@pytest.mark.parametrize("args, message", [
    ((), "non-finite"),
    (("--missing", "omit", "-k", "2"), "0 rows remain"),
])
def test_cli_missing_errors_exit_2(tmp_path, args, message, scheduler_address):
    # in this process (conftest.invoke_main) on the session's cluster: the exit code and
    # the distgmm error line are main()'s, without a Python start and an embedded cluster
    X = np.full((30, 2), np.nan) if "omit" in args else _with_missing()[0]
    np.save(tmp_path / "x.npy", X)
    k = () if "-k" in args else ("-k", "2")
    code, err = invoke_main(["fit", str(tmp_path / "x.npy"), *k, *args, "-o",
                             str(tmp_path / "out"), "--address", scheduler_address])
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if ln.startswith("distgmm: error")]
    assert len(lines) == 1 and message in lines[0]
    assert not (tmp_path / "out").exists()


def test_two_d_predictions_open_in_xarray(tmp_path):
    import xarray as xr

    Xn, keep = _with_missing(seed=13)
    np.save(tmp_path / "x.npy", Xn)
    r = run_cli("fit", str(tmp_path / "x.npy"), "-k", "3", "--missing", "omit", "-o",
                str(tmp_path / "out"), "--probabilities", "--log-likelihood",
                "--n-workers", "1")
    assert r.returncode == 0, r.stderr
    assert "Warning" not in r.stderr
    ds = xr.open_zarr(str(tmp_path / "out" / "predictions.zarr"))
    assert ds["label"].dims == ("row",) and ds["log_likelihood"].dims == ("row",)
    assert ds["probabilities"].dims == ("row", "component")
    assert ds.sizes == {"row": len(Xn), "component": 3}
    g = zarr.open_group(str(tmp_path / "out" / "predictions.zarr"), mode="r")
    np.testing.assert_array_equal(ds["label"].values, g["label"][:])
    assert (ds["label"].values[~keep] == -1).all()


def test_predict_on_a_dask_dataframe_omits_like_a_dask_array():
    import dask.dataframe as dd
    import pandas as pd

    X, keep = _with_missing()
    gm = GaussianMixture(3, random_state=0, missing="omit").fit(X)
    df = pd.DataFrame(X, columns=["a", "b", "c"])
    labels = gm.predict(dd.from_pandas(df, npartitions=4)).compute()
    expected = gm.predict(da.from_array(X, chunks=100)).compute()
    np.testing.assert_array_equal(labels.to_numpy(), expected)
    assert (labels.to_numpy()[~keep] == -1).all() and (labels.to_numpy()[keep] >= 0).all()
