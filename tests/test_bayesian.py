"""BayesianGaussianMixture against scikit-learn's, the oracle: same start, same solution."""

import re
import warnings

import dask
import dask.array as da
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import BayesianGaussianMixture as SKB
from sklearn.mixture._gaussian_mixture import _estimate_gaussian_parameters
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import parametrize_with_checks
from test_numerics import ragged_cuts

from distgmm import BayesianGaussianMixture, GaussianMixture, load_model
from distgmm.numerics.variational import VBParams, estep_params

TYPES = ["full", "tied", "diag", "spherical"]
PRIORS = ["dirichlet_process", "dirichlet_distribution"]
K = 10


def rel(a, b):
    return np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(b))


def mixture(k, d, n, seed, offset=50.0):
    """k well-separated components (centres >= 12 apart, sheared unit shapes)."""
    rng = np.random.default_rng(seed)
    centres = np.zeros((k, d))
    for j in range(1, k):
        while True:
            c = rng.uniform(-12 * k**0.5, 12 * k**0.5, size=d)
            if np.min(np.linalg.norm(centres[:j] - c, axis=1)) > 12:
                break
        centres[j] = c
    labels = rng.integers(0, k, size=n)
    X = np.empty((n, d))
    for j in range(k):
        shear = rng.normal(size=(d, d)) * 0.6 + np.eye(d)
        rows = labels == j
        X[rows] = centres[j] + rng.normal(size=(rows.sum(), d)) @ shear.T
    return X + offset, labels, centres + offset


def kmeans_resp(X, k=K, seed=0):
    """One-hot responsibilities of a k-means labelling: the start both libraries get."""
    from sklearn.cluster import KMeans

    labels = KMeans(k, n_init=1, random_state=seed).fit(X).labels_
    resp = np.zeros((len(X), k))
    resp[np.arange(len(X)), labels] = 1.0
    return resp


def fit_both(X, resp, ct, pt, **kw):
    """scikit-learn's and distgmm's fits from the same initial responsibilities (through
    the libraries' private initialisation hooks, in this test only)."""
    params = dict(n_components=resp.shape[1], covariance_type=ct,
                  weight_concentration_prior_type=pt, max_iter=500, **kw)
    ref = SKB(**params)
    ref._initialize_parameters = lambda X_, random_state, xp=None: ref._initialize(X_, resp)
    got = BayesianGaussianMixture(**params)
    got._initial_estimates = lambda blocks, seed: _estimate_gaussian_parameters(
        X, resp, got.reg_covar, ct)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref.fit(X)
        got.fit(X)
    return ref, got


def assert_same_solution(got, ref, rtol=1e-6):
    for attr in ("weights_", "means_", "covariances_", "precisions_cholesky_",
                 "precisions_", "mean_precision_", "degrees_of_freedom_"):
        assert rel(getattr(got, attr), getattr(ref, attr)) < rtol, attr
    for a, b in zip(np.atleast_2d(got.weight_concentration_),
                    np.atleast_2d(ref.weight_concentration_)):
        assert rel(a, b) < rtol, "weight_concentration_"
    ref_bound = float(np.ravel(ref.lower_bound_)[0])  # scikit-learn's tied gives an array
    assert abs(got.lower_bound_ - ref_bound) <= rtol * abs(ref_bound)
    np.testing.assert_allclose(got.lower_bounds_, np.ravel(ref.lower_bounds_), rtol=rtol)
    assert got.n_iter_ == ref.n_iter_ and got.converged_ == ref.converged_


@pytest.mark.parametrize("pt", PRIORS)
@pytest.mark.parametrize("ct", TYPES)
def test_same_start_same_solution_as_sklearn(ct, pt):
    X, _, _ = mixture(3, 3, 1500, seed=TYPES.index(ct) + 10 * PRIORS.index(pt))
    ref, got = fit_both(X, kmeans_resp(X), ct, pt)
    assert ref.converged_ and ref.n_iter_ > 3
    assert_same_solution(got, ref)
    for attr in ("mean_prior_", "covariance_prior_", "degrees_of_freedom_prior_",
                 "weight_concentration_prior_", "mean_precision_prior_"):
        np.testing.assert_allclose(getattr(got, attr), getattr(ref, attr), rtol=1e-10)
    np.testing.assert_allclose(got.score_samples(X), ref.score_samples(X), rtol=1e-7)
    np.testing.assert_allclose(got.predict_proba(X), ref.predict_proba(X), atol=1e-7)
    np.testing.assert_array_equal(got.predict(X), ref.predict(X))


@pytest.mark.parametrize("ct", ["full", "diag"])
def test_same_solution_with_given_priors(ct):
    X, _, _ = mixture(3, 2, 1200, seed=5)
    cov = np.array([[2.0, 0.3], [0.3, 1.0]]) if ct == "full" else np.array([2.0, 1.0])
    priors = dict(weight_concentration_prior=0.05, mean_precision_prior=0.5,
                  mean_prior=X.mean(axis=0) + 1.0, degrees_of_freedom_prior=3.5,
                  covariance_prior=cov)
    ref, got = fit_both(X, kmeans_resp(X, 6), ct, "dirichlet_distribution", **priors)
    assert_same_solution(got, ref)


@pytest.mark.parametrize("pt", PRIORS)
@pytest.mark.parametrize("k", [2, 3, 4, 5, 6])
def test_default_start_switches_off_the_extra_components(k, pt):
    X, labels, centres = mixture(k, 2, 3000, seed=k)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        bgm = BayesianGaussianMixture(n_components=K, weight_concentration_prior_type=pt,
                                      max_iter=500, random_state=0).fit(X)
    on = np.flatnonzero(bgm.weights_ >= 1e-3)
    assert len(on) == k
    np.testing.assert_array_equal(np.sort(bgm.switched_off()), np.setdiff1d(np.arange(K), on))
    # the components left on are the true ones: each true centre has one mean near it
    nearest = np.linalg.norm(centres[:, None] - bgm.means_[on][None], axis=2).min(axis=1)
    assert nearest.max() < 0.5
    np.testing.assert_allclose(np.sort(bgm.weights_[on]),
                               np.sort(np.bincount(labels) / len(X)), atol=0.02)


class CountingScheduler:
    """A synchronous scheduler that counts how often it is asked to compute."""

    def __init__(self):
        self.calls = 0

    def __call__(self, dsk, keys, **kwargs):
        self.calls += 1
        return dask.get(dsk, keys, **kwargs)


@pytest.mark.parametrize("ct", TYPES)
def test_exactly_one_compute_per_iteration(ct):
    X, _, _ = mixture(3, 3, 900, seed=22)
    resp = kmeans_resp(X, 5)
    calls = {}
    for max_iter in (3, 7):
        bgm = BayesianGaussianMixture(n_components=5, covariance_type=ct, max_iter=max_iter,
                                      tol=0, cache="none")
        bgm._initial_estimates = lambda blocks, seed: _estimate_gaussian_parameters(
            X, resp, 1e-6, ct)
        counter = CountingScheduler()
        with dask.config.set(scheduler=counter), warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            labels = bgm.fit_predict(da.from_array(X, chunks=150))
        assert bgm.n_iter_ == max_iter and isinstance(labels, da.Array)
        calls[max_iter] = counter.calls
    # the priors' data pass (and its origin row) once per fit, then one per iteration
    assert calls[7] - calls[3] == 4
    assert calls[3] == 3 + 2


@pytest.mark.parametrize("ct", TYPES)
def test_numpy_and_dask_input_give_the_same_bits_for_the_same_blocks(ct):
    X, _, _ = mixture(4, 3, 1000, seed=23)
    kw = dict(n_components=8, covariance_type=ct, max_iter=15, tol=0, random_state=1)
    with warnings.catch_warnings(), dask.config.set(scheduler="threads"):
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = BayesianGaussianMixture(**kw).fit(X)
        b = BayesianGaussianMixture(**kw).fit(da.from_array(X, chunks=(len(X), 3)))
    for attr in ("means_", "covariances_", "weights_", "mean_precision_",
                 "degrees_of_freedom_", "lower_bounds_", "mean_prior_", "covariance_prior_"):
        np.testing.assert_array_equal(getattr(a, attr), getattr(b, attr), err_msg=attr)


def test_any_chunking_on_a_cluster_gives_the_same_solution(client):
    X, _, _ = mixture(3, 3, 1800, seed=21)
    resp = kmeans_resp(X, 6)
    ref, _ = fit_both(X, resp, "full", "dirichlet_process")
    got = BayesianGaussianMixture(n_components=6, max_iter=500)
    got._initial_estimates = lambda blocks, seed: _estimate_gaussian_parameters(
        X, resp, 1e-6, "full")
    ragged = da.from_array(X, chunks=(100, 3)).rechunk(((300, 0, 1, 799, 0, 400, 300), (3,)))
    got.fit(ragged)
    assert_same_solution(got, ref, rtol=1e-9)


def test_restarts_share_passes_and_keep_the_best_bound():
    X, _, _ = mixture(3, 2, 1500, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        both = BayesianGaussianMixture(n_components=6, n_init=3, random_state=4).fit(X)
    assert both.lower_bound_ >= max(both.lower_bounds_) - 1e-9
    assert len(both.timings_["iterations"]) >= both.n_iter_
    assert np.sum(both.weights_ >= 1e-3) == 3


def test_save_load_and_to_sklearn_round_trip(tmp_path):
    X, _, _ = mixture(3, 3, 1200, seed=8)
    for ct, pt in (("full", "dirichlet_process"), ("tied", "dirichlet_distribution"),
                   ("spherical", "dirichlet_process")):
        bgm = BayesianGaussianMixture(n_components=6, covariance_type=ct,
                                      weight_concentration_prior_type=pt, max_iter=20,
                                      random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            bgm.fit(X)
        bgm.save(str(tmp_path / ct))
        back = load_model(str(tmp_path / ct))
        assert type(back) is BayesianGaussianMixture and back.get_params() == bgm.get_params()
        for attr in ("weights_", "means_", "covariances_", "precisions_cholesky_",
                     "mean_precision_", "degrees_of_freedom_", "mean_prior_",
                     "covariance_prior_", "lower_bounds_"):
            np.testing.assert_array_equal(getattr(back, attr), getattr(bgm, attr))
        np.testing.assert_array_equal(np.atleast_2d(back.weight_concentration_),
                                      np.atleast_2d(bgm.weight_concentration_))
        sk = back.to_sklearn()
        assert isinstance(sk, SKB)
        np.testing.assert_array_equal(sk.predict(X), bgm.predict(X))
        np.testing.assert_allclose(sk.score_samples(X), bgm.score_samples(X), rtol=1e-10)
        np.testing.assert_allclose(sk.predict_proba(X), back.predict_proba(X), atol=1e-12)
    # an EM model still loads as one; GaussianMixture's own loader refuses a Bayesian one
    gm = GaussianMixture(2, random_state=0).fit(X)
    gm.save(str(tmp_path / "gmm"))
    assert type(load_model(str(tmp_path / "gmm"))) is GaussianMixture
    from distgmm.estimator import load_model as load_gmm

    with pytest.raises(ValueError, match="BayesianGaussianMixture.*distgmm.load_model"):
        load_gmm(str(tmp_path / "full"))


def test_sklearn_parameters_and_defaults():
    ours = BayesianGaussianMixture().get_params()
    theirs = SKB().get_params()
    assert {k: ours[k] for k in theirs} == theirs
    assert set(ours) - set(theirs) == {"cache", "compute_dtype", "missing"}


X_BAD = mixture(2, 3, 200, seed=0)[0]


@pytest.mark.parametrize("params, match", [
    (dict(weight_concentration_prior=0.0), "weight_concentration_prior=0.0: give a number > 0"),
    (dict(weight_concentration_prior=-1), "weight_concentration_prior"),
    (dict(mean_precision_prior=-2.0), "mean_precision_prior=-2.0: give a number > 0"),
    (dict(weight_concentration_prior_type="dirichlet"), "did you mean 'dirichlet_process'"),
    (dict(degrees_of_freedom_prior=2.0), "greater than 2, but got 2.000: give a number > "),
    (dict(degrees_of_freedom_prior=1.5), "degrees_of_freedom_prior"),
    (dict(mean_prior=[0.0, 1.0]), r"shape of \(3,\), but got \(2,\): mean_prior must be 3"),
    (dict(covariance_prior=np.eye(2)), r"'full covariance_prior' should have the shape of "
                                       r"\(3, 3\)"),
    (dict(covariance_prior=-np.eye(3)), "positive-definite"),
    (dict(covariance_type="diag", covariance_prior=[1.0, -1.0, 1.0]), "each > 0"),
    (dict(covariance_type="spherical", covariance_prior=-1.0), "covariance_prior"),
    (dict(covariance_type="spherical", covariance_prior=[1.0, 2.0, 3.0]), "one number > 0"),
])
def test_bad_input_is_one_clear_error(params, match):
    bgm = BayesianGaussianMixture(n_components=2, **params)
    with pytest.raises(ValueError, match=match) as info:
        bgm.fit(X_BAD)
    assert "\n" not in str(info.value)
    assert not hasattr(bgm, "weights_")
    if isinstance(info.value, InvalidParameterError):
        assert re.search(r"The '\w+' parameter of BayesianGaussianMixture", str(info.value))


@pytest.mark.parametrize("where", [(0, 4), (1, 1)])
def test_resumed_fit_equals_uninterrupted(tmp_path, where):
    from distgmm.io.checkpoint import Checkpoint

    class Killed(Exception):
        pass

    def kill(info):
        if (info.init, info.n_iter) == where:
            raise Killed()

    X, _, _ = mixture(3, 3, 1500, seed=9)
    kw = dict(n_components=6, covariance_type="full", n_init=2, tol=1e-6, max_iter=30,
              random_state=1, init_params="random_from_data")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref = BayesianGaussianMixture(**kw).fit(X)
        with pytest.raises(Killed):
            BayesianGaussianMixture(**kw).fit(
                X, callback=kill, checkpoint=Checkpoint(str(tmp_path / "c.json"), {"j": 1}))
        saved = Checkpoint(str(tmp_path / "c.json"), {"j": 1}).restore().restarts[where[0]]
        if where[1] > 1:  # the posterior after the last finished iteration was saved
            assert saved.n_iter == where[1] - 1 and isinstance(saved.params, VBParams)
        else:
            assert saved is None
        resumed = BayesianGaussianMixture(**kw).fit(
            X, checkpoint=Checkpoint(str(tmp_path / "c.json"), {"j": 1}))
    for attr in ("weights_", "means_", "covariances_", "mean_precision_",
                 "degrees_of_freedom_", "lower_bounds_"):
        np.testing.assert_array_equal(getattr(resumed, attr), getattr(ref, attr))
    assert (resumed.n_iter_, resumed.converged_) == (ref.n_iter_, ref.converged_)


@pytest.mark.slow  # a cluster and two CLI runs: ~45 s on a loaded machine
def test_cli_fit_estimator_bayes_publishes_and_reports(scheduler_address, tmp_path):
    import json

    from conftest import run_cli

    X, _, _ = mixture(3, 3, 3000, seed=12)
    np.save(tmp_path / "x.npy", X)
    out = tmp_path / "out"
    r = run_cli("fit", tmp_path / "x.npy", "-k", 8, "--estimator", "bayes", "--report",
                "--max-iter", 300, "--output", out, address=scheduler_address)
    assert r.returncode == 0, r.stderr
    model = load_model(str(out / "model"))
    assert type(model) is BayesianGaussianMixture
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref = BayesianGaussianMixture(n_components=8, max_iter=300, random_state=0).fit(X)
    np.testing.assert_allclose(model.weights_, ref.weights_, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(model.means_, ref.means_, rtol=1e-8)
    m = json.loads((out / "metrics.json").read_text())
    assert m["kind"] == "bayes" and m["effective_components"] == 3
    assert m["switched_off"] == np.flatnonzero(model.weights_ < 1e-3).tolist()
    assert len(m["switched_off"]) == 5
    assert m["cluster_sizes"] == np.bincount(model.predict(X), minlength=8).tolist()
    page = (out / "report.html").read_text()
    assert page.count("switched off</td>") == 5 and "3 of 8 components used" in page
    r = run_cli("info", out / "model")
    assert r.returncode == 0 and "kind: bayes" in r.stdout
    # predict with the saved Bayesian model
    scored = tmp_path / "scored"
    r = run_cli("predict", out, tmp_path / "x.npy", "--output", scored, "--quiet",
                address=scheduler_address)
    assert r.returncode == 0, r.stderr
    import zarr

    labels = zarr.open_group(str(scored / "predictions.zarr"), mode="r")["label"][:]
    np.testing.assert_array_equal(labels, model.to_sklearn().predict(X))


@pytest.mark.parametrize("args, match", [
    (("--estimator", "bayes", "--weight-concentration-prior", "0"), "weight_concentration_prior"),
    (("--weight-concentration-prior", "0.5"), "apply to kind: bayes only"),
    ("SPEC", "bayes fits one model"),  # a sweep with kind: bayes, in a job spec
])
def test_cli_bad_bayes_settings_exit_2_with_one_line(tmp_path, args, match):
    from conftest import invoke_main

    np.save(tmp_path / "x.npy", X_BAD)
    if args == "SPEC":
        spec = tmp_path / "job.yaml"
        spec.write_text(f"input: {{path: {tmp_path / 'x.npy'}}}\n"
                        "model: {n_components: '2..4', kind: bayes}\n"
                        f"output: {{path: {tmp_path / 'out'}}}\n")
        argv = ["run", spec]
    else:
        argv = ["fit", tmp_path / "x.npy", "-k", 3, "--output", tmp_path / "out", *args]
    # in this process, against a closed port: were the check missed, 75, not a cluster
    code, err = invoke_main([*argv, "--address", "tcp://127.0.0.1:9"], silent=True)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("distgmm: error: "), err
    assert match in lines[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("ct, cov", [("full", np.eye(3) * 2.0), ("spherical", 1.5)])
def test_given_priors_survive_save_and_load(tmp_path, ct, cov):
    X, _, _ = mixture(3, 3, 900, seed=13)
    bgm = BayesianGaussianMixture(n_components=5, covariance_type=ct, max_iter=10,
                                  mean_prior=X.mean(axis=0), covariance_prior=cov,
                                  degrees_of_freedom_prior=4.0, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        bgm.fit(X)
    bgm.save(str(tmp_path / "m"))
    back = load_model(str(tmp_path / "m"))
    np.testing.assert_array_equal(back.mean_prior, bgm.mean_prior)
    np.testing.assert_array_equal(back.covariance_prior, bgm.covariance_prior)
    np.testing.assert_array_equal(back.covariance_prior_, bgm.covariance_prior_)
    assert back.degrees_of_freedom_prior_ == 4.0
    np.testing.assert_array_equal(back.predict(X), bgm.predict(X))


def test_warm_start_continues_the_posterior():
    X, _, _ = mixture(3, 2, 1200, seed=14)
    kw = dict(n_components=6, tol=0, random_state=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        straight = BayesianGaussianMixture(max_iter=10, **kw).fit(X)
        warm = BayesianGaussianMixture(max_iter=4, warm_start=True, **kw).fit(X)
        warm.fit(X)
        warm.set_params(max_iter=2)
        warm.fit(X)
    assert warm.n_iter_ == 2
    for attr in ("weights_", "means_", "covariances_", "mean_precision_"):
        np.testing.assert_array_equal(getattr(warm, attr), getattr(straight, attr))
    assert warm.lower_bound_ == straight.lower_bound_


@pytest.mark.parametrize("ct", TYPES)
def test_entropy_from_the_statistics_equals_brute_force(ct):
    """The lower bound's sum r log r, from the pass's statistics, against responsibilities
    computed row by row with scipy (weights not summing to one, far from the origin)."""
    from scipy.special import logsumexp
    from scipy.stats import multivariate_normal
    from test_numerics import dense_cov, random_params

    from distgmm.numerics import GMMParams, chunk_stats
    from distgmm.numerics.variational import responsibility_entropy

    rng = np.random.default_rng(7)
    p = random_params(4, 3, ct, seed=8)
    p = GMMParams.from_covariances(np.array([0.3, 2.0, 1e-5, 0.9]), p.means + 1e3,
                                   p.covariances, ct)
    X = rng.normal(scale=3, size=(500, 3)) + 1e3
    logp = np.column_stack([multivariate_normal(p.means[k], dense_cov(p, k)).logpdf(X)
                            for k in range(4)]) + np.log(p.weights)
    log_r = logp - logsumexp(logp, axis=1)[:, None]
    expected = float(np.sum(np.exp(log_r) * log_r))
    got = responsibility_entropy(chunk_stats(X, None, 0, p), p)
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-9 * len(X))


@settings(max_examples=20, deadline=None)
@given(cuts=ragged_cuts(), ct=st.sampled_from(TYPES))
def test_any_chunking_gives_the_same_variational_step(cuts, ct):
    from distgmm.numerics import chunk_stats, merge_all
    from distgmm.numerics.variational import resolve_priors, vb_m_step, vb_update

    X, _, _ = mixture(3, 3, 300, seed=4)
    priors = resolve_priors(ct, "dirichlet_process", 4, X.mean(axis=0),
                            np.cov(X.T) if ct in ("full", "tied") else X.var(axis=0, ddof=1))
    resp = np.random.default_rng(5).dirichlet(np.ones(4), size=len(X))
    vb = vb_m_step(*_estimate_gaussian_parameters(X, resp, 1e-6, ct), priors)
    sent = estep_params(vb)
    whole, lb = vb_update(chunk_stats(X, None, 0, sent), sent, priors, 1e-6)
    parts, lb_parts = vb_update(merge_all([chunk_stats(X[a:b], None, a, sent)
                                           for a, b in zip(cuts[:-1], cuts[1:])]),
                                sent, priors, 1e-6)
    assert lb_parts == pytest.approx(lb, rel=1e-11)
    for name in ("weight_concentration", "means", "covariances", "degrees_of_freedom"):
        np.testing.assert_allclose(getattr(parts, name), getattr(whole, name), rtol=1e-10)


def test_benchmark_script_runs_at_smoke_size(tmp_path):
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "bayes.py"
    spec = importlib.util.spec_from_file_location("bench_bayes", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "bayes"
    assert bench.main(["--case", "smoke", "--iterations", "2", "--rounds", "1",
                       "--no-cluster", "--out", str(out)]) == 0
    row = json.loads(out.with_suffix(".json").read_text())["rows"][0]
    for system in ("distgmm_gmm_inprocess", "distgmm_bayes_inprocess", "sklearn_bayes"):
        assert len(row["iterations"][system]) == 2 and row[system] > 0, system
    assert "| smoke | full |" in out.with_suffix(".md").read_text()


def test_job_spec_model_kind():
    from distgmm.jobs.spec import JobSpec

    base = {"input": {"path": "/d/x.zarr"}, "model": {"n_components": 8},
            "output": {"path": "/d/out"}}
    gmm = JobSpec.from_mapping(base)
    bayes = JobSpec.from_mapping(base, ["model.kind=bayes",
                                        "model.weight_concentration_prior=0.01"])
    assert gmm.model.kind == "gmm" and bayes.model.kind == "bayes"
    assert set(GaussianMixture().get_params()) >= set(gmm.model.estimator_params())
    params = bayes.model.estimator_params()
    assert params["weight_concentration_prior"] == 0.01
    assert params["weight_concentration_prior_type"] == "dirichlet_process"
    assert set(BayesianGaussianMixture().get_params()) >= set(params)
    BayesianGaussianMixture(**params)._validate_params()
    assert gmm.fingerprint() != bayes.fingerprint()
    for overrides, match in (
            (["model.kind=bayes", "model.n_components=2..5"], "bayes fits one model"),
            (["model.kind=bayes", "model.init_params=previous"], "with kind: bayes use"),
            (["model.weight_concentration_prior=1"], "apply to kind: bayes only"),
            (["model.kind=bayes", "model.weight_concentration_prior=0"], "greater than 0"),
            (["model.kind=bays"], "gmm.*bayes")):
        with pytest.raises(ValueError, match=match) as info:
            JobSpec.from_mapping(base, overrides)
        assert "\n" not in str(info.value)


@parametrize_with_checks([BayesianGaussianMixture(n_components=2, max_iter=20)])
def test_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


def test_a_saved_outlier_threshold_comes_back_with_the_model(tmp_path):
    X, _, _ = mixture(3, 3, 1200, seed=9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        bgm = BayesianGaussianMixture(n_components=6, max_iter=20, random_state=0).fit(X)
    threshold = bgm.outlier_threshold(X, 0.05)
    assert threshold == np.sort(bgm.score_samples(X))[59]  # ceil(0.05 * 1200) = 60th
    bgm.save(str(tmp_path / "m"))
    back = load_model(str(tmp_path / "m"))
    assert back.outlier_threshold_ == threshold and back.outlier_fraction_ == 0.05
    np.testing.assert_array_equal(back.is_outlier(X), bgm.is_outlier(X))


def test_n_init_and_missing_are_validated():
    X, _, _ = mixture(2, 2, 200, seed=10)
    for bad in ({"n_init": 0}, {"missing": "drop"}):
        with pytest.raises(InvalidParameterError, match=list(bad)[0]):
            BayesianGaussianMixture(**bad).fit(X)


def test_fit_takes_a_gridded_dataarray_with_its_feature_dim():
    import xarray as xr
    X, _, _ = mixture(3, 3, 1200, seed=11)
    grid = xr.DataArray(X.T.reshape(3, 30, 40), dims=("band", "y", "x"),
                        coords={"band": ["r", "g", "b"]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        on_grid = BayesianGaussianMixture(n_components=5, max_iter=30, random_state=0).fit(
            grid, feature_dim="band")
    labels = on_grid.predict(grid, feature_dim="band")
    assert labels.dims == ("y", "x") and labels.shape == (30, 40)
    assert on_grid.n_features_in_ == 3
