"""The estimator on numpy input against scikit-learn, the oracle."""

import re
import warnings

import numpy as np
import pytest
from conftest import blobs, sklearn_start
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture as SK
from sklearn.utils.estimator_checks import check_estimator

from distgmm import GaussianMixture
from distgmm.parallel.em import run_em

TYPES = ["full", "tied", "diag", "spherical"]


def rel(a, b):
    return np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(b))


def fit_both(X, ct, k=3, **kw):
    start = sklearn_start(X, k, ct)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref = SK(k, covariance_type=ct, max_iter=20, tol=0, **start, **kw).fit(X)
        got = GaussianMixture(k, covariance_type=ct, max_iter=20, tol=0, **start, **kw).fit(X)
    return ref, got


def assert_same_model(got, ref, rtol=1e-7):
    for attr in ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"):
        assert rel(getattr(got, attr), getattr(ref, attr)) < rtol, attr
    assert abs(got.lower_bound_ - ref.lower_bound_) <= rtol * abs(ref.lower_bound_)
    np.testing.assert_allclose(got.lower_bounds_, ref.lower_bounds_, rtol=rtol)
    assert got.n_iter_ == ref.n_iter_ and got.converged_ == ref.converged_


@pytest.mark.parametrize("ct", TYPES)
def test_same_start_same_model_as_sklearn(ct):
    X, _, _ = blobs(n=1200, d=4, k=3, seed=1)
    ref, got = fit_both(X, ct)
    assert_same_model(got, ref)
    np.testing.assert_allclose(got.score_samples(X), ref.score_samples(X), rtol=1e-9)
    np.testing.assert_allclose(got.predict_proba(X), ref.predict_proba(X), atol=1e-9)
    np.testing.assert_array_equal(got.predict(X), ref.predict(X))
    assert got.bic(X) == pytest.approx(ref.bic(X), rel=1e-10)
    assert got.aic(X) == pytest.approx(ref.aic(X), rel=1e-10)


def test_float32_input_matches_sklearn_float64_fit():
    X, _, _ = blobs(n=900, d=3, seed=2)
    X32 = X.astype(np.float32)
    start = sklearn_start(X32.astype(np.float64), 3, "full")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref = SK(3, max_iter=10, tol=0, **start).fit(X32.astype(np.float64))
        got = GaussianMixture(3, max_iter=10, tol=0, **start).fit(X32)
    assert_same_model(got, ref, rtol=1e-9)


def test_convergence_matches_sklearn_with_default_tol():
    X, _, _ = blobs(n=1500, d=2, k=4, seed=3)
    start = sklearn_start(X, 4, "full", seed=5)
    ref = SK(4, max_iter=500, **start).fit(X)
    got = GaussianMixture(4, max_iter=500, **start).fit(X)
    assert got.converged_ and got.n_iter_ == ref.n_iter_
    assert_same_model(got, ref, rtol=1e-7)


@pytest.mark.parametrize("init", ["kmeans", "k-means++", "random", "random_from_data"])
def test_fit_predict_equals_fit_then_predict(init):
    X, _, _ = blobs(n=800, d=3, seed=4)
    a = GaussianMixture(3, init_params=init, random_state=7, max_iter=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        labels = a.fit_predict(X)
        b = GaussianMixture(3, init_params=init, random_state=7, max_iter=5).fit(X)
    np.testing.assert_array_equal(labels, b.predict(X))
    np.testing.assert_array_equal(a.means_, b.means_)  # reruns are identical


def test_kmeans_init_finds_separated_clusters():
    X, labels, centers = blobs(n=3000, d=2, k=5, seed=8)
    gm = GaussianMixture(5, random_state=0).fit(X)
    order = [np.argmin(((gm.means_ - c) ** 2).sum(1)) for c in centers]
    assert sorted(order) == list(range(5))
    np.testing.assert_allclose(gm.means_[order], centers, atol=0.2)


def test_n_init_keeps_the_best_lower_bound():
    X, _, _ = blobs(n=900, d=2, k=4, seed=9)
    kw = dict(init_params="random", max_iter=30)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        best = GaussianMixture(4, n_init=3, random_state=0, **kw).fit(X)
        rng = np.random.RandomState(0)  # each restart alone, with the seed the loop draws
        lbs = []
        for _ in range(3):
            seed = int(rng.randint(np.iinfo(np.int32).max))
            g = GaussianMixture(4, **kw)
            blocks = g._blocks(X, None, reset=True)
            lbs.append(run_em(blocks, g._initial(blocks, seed), tol=1e-3, max_iter=30,
                              reg_covar=1e-6).lower_bound)
    assert len(set(lbs)) == 3
    assert best.lower_bound_ == max(lbs)


def test_convergence_warning_and_max_iter_zero():
    X, _, _ = blobs(n=300, seed=10)
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        GaussianMixture(3, max_iter=1, random_state=0).fit(X)
    gm = GaussianMixture(3, max_iter=0, random_state=0).fit(X)
    assert gm.n_iter_ == 0 and gm.lower_bound_ == -np.inf and gm.lower_bounds_ == []


def test_warm_start_continues_like_sklearn():
    X, _, _ = blobs(n=900, d=3, seed=11)
    start = sklearn_start(X, 3, "diag")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref = SK(3, covariance_type="diag", max_iter=3, tol=0, warm_start=True, **start)
        got = GaussianMixture(3, covariance_type="diag", max_iter=3, tol=0, warm_start=True,
                              **start)
        for _ in range(3):
            ref.fit(X)
            got.fit(X)
    assert_same_model(got, ref)


def test_sample_weight_equals_repeated_rows():
    X, _, _ = blobs(n=400, d=2, seed=12)
    reps = np.random.default_rng(0).integers(0, 4, size=len(X))
    start = sklearn_start(X, 3, "full")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = GaussianMixture(3, max_iter=15, tol=0, **start).fit(X, sample_weight=reps)
        b = GaussianMixture(3, max_iter=15, tol=0, **start).fit(np.repeat(X, reps, axis=0))
    for attr in ("weights_", "means_", "covariances_", "lower_bound_"):
        np.testing.assert_allclose(getattr(a, attr), getattr(b, attr), rtol=1e-10)


@pytest.mark.parametrize("ct", TYPES)
def test_sample_has_the_fitted_shape(ct):
    X, _, _ = blobs(n=600, d=2, seed=13)
    gm = GaussianMixture(3, covariance_type=ct, random_state=0).fit(X)
    S, y = gm.sample(5000)
    assert S.shape == (5000, 2) and set(np.unique(y)) <= {0, 1, 2}
    np.testing.assert_allclose(np.bincount(y, minlength=3) / 5000, gm.weights_, atol=0.03)


def test_dataframe_feature_names():
    pd = pytest.importorskip("pandas")
    X, _, _ = blobs(n=300, d=2, seed=14)
    df = pd.DataFrame(X, columns=["a", "b"])
    gm = GaussianMixture(2, random_state=0).fit(df)
    assert list(gm.feature_names_in_) == ["a", "b"]
    with pytest.raises(ValueError, match="feature names"):
        gm.predict(df.rename(columns={"a": "z"}))


def test_get_set_params_like_sklearn():
    gm = GaussianMixture()
    ours = gm.get_params()
    theirs = SK().get_params()
    assert {k: ours[k] for k in theirs} == theirs
    assert ours["cache"] == "auto"
    assert gm.set_params(n_components=4).n_components == 4


def test_check_estimator_passes():
    failures = [r for r in check_estimator(GaussianMixture(), on_fail=None)
                if r["status"] == "failed"]
    assert failures == []


def test_max_iter_zero_keeps_the_last_init_like_sklearn():
    X, _, _ = blobs(n=300, d=2, seed=15)
    runs = [GaussianMixture(2, n_init=n, max_iter=0, init_params="random_from_data",
                            random_state=0).fit(X) for n in (1, 3)]
    assert not np.array_equal(runs[0].means_, runs[1].means_)
    rng = np.random.RandomState(0)
    seeds = [int(rng.randint(np.iinfo(np.int32).max)) for _ in range(3)]
    g = GaussianMixture(2, init_params="random_from_data")
    last = g._initial(g._blocks(X, None, reset=True), seeds[-1])
    np.testing.assert_array_equal(runs[1].means_, last.means)


def test_bic_aic_on_dask_input_are_floats():
    import dask
    import dask.array as da

    X, _, _ = blobs(n=400, d=2, seed=16)
    gm = GaussianMixture(3, random_state=0).fit(X)
    Xd = da.from_array(X, chunks=100)
    with dask.config.set(scheduler="threads"):
        for crit in ("bic", "aic"):
            got = getattr(gm, crit)(Xd[Xd[:, 0] > -1e9])  # unknown chunk sizes
            assert isinstance(got, float)
            assert got == pytest.approx(getattr(gm, crit)(X), rel=1e-12)


SETTING_BEST_PARAMS = dict(  # scikit-learn's test_gaussian_mixture_setting_best_params
    covariance_type="spherical", n_components=6, max_iter=1,
    means_init=np.array([
        [0.670637869618158, 0.21038256107384043, 0.12892629765485303],
        [0.09394051075844147, 0.5759464955561779, 0.929296197576212],
        [0.5033230372781258, 0.9569852381759425, 0.08654043447295741],
        [0.18578301420435747, 0.5531158970919143, 0.19388943970532435],
        [0.4548589928173794, 0.35182513658825276, 0.568146063202464],
        [0.609279894978321, 0.7929063819678847, 0.9620097270828052]]),
    precisions_init=np.array([999999.999604483, 999999.9990869573, 553.7603944542167,
                              204.78596008931834, 15.867423501783637, 85.4595728389735]),
    weights_init=[0.03333333333333341, 0.03333333333333341, 0.06666666666666674,
                  0.06666666666666674, 0.7000000000000001, 0.10000000000000007],
)
SKLEARN_COLLAPSE = (
    "Fitting the mixture model failed because some components have ill-defined empirical "
    "covariance (for instance caused by singleton or collapsed samples). Try to decrease "
    "the number of components, increase reg_covar, or scale the input data."
)


def test_singleton_components_with_reg_covar_zero_raise():
    # Decision (see tests/test_sklearn_parity.py EXCLUDED): components 0 and 1 each hold
    # one sample; with reg_covar=0 their variance is rounding noise (scikit-learn: +4e-16,
    # and it carries on with a degenerate model; distgmm: -2e-17), so distgmm raises.
    X = np.random.RandomState(0).uniform(size=(30, 3))
    with pytest.raises(ValueError, match=re.escape(SKLEARN_COLLAPSE) + ".*fewer components"):
        GaussianMixture(reg_covar=0, **SETTING_BEST_PARAMS).fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm = GaussianMixture(**SETTING_BEST_PARAMS).fit(X)  # the default reg_covar fits
    assert not gm.converged_ and gm.n_iter_ == 1 and np.isfinite(gm.lower_bound_)
    assert np.all(gm.covariances_ > 0)


@pytest.mark.parametrize("ct", TYPES)
def test_reg_covar_zero_on_two_points_raises_sklearns_message(ct):
    X = np.vstack((np.ones((5, 5)), np.zeros((5, 5))))
    with pytest.raises(ValueError, match=re.escape(SKLEARN_COLLAPSE)):
        GaussianMixture(10, reg_covar=0, covariance_type=ct, random_state=0).fit(X)


@pytest.mark.parametrize("params, sklearn_says, distgmm_says", [
    (dict(n_components=0), "The 'n_components' parameter of GaussianMixture must be an int",
     "n_components=0: give an integer >= 1."),
    (dict(covariance_type="ful"), "must be a str among", "did you mean 'full'?"),
    (dict(tol=-1.0), "The 'tol' parameter", "tol=-1.0: give a number >= 0."),
    (dict(cache="disk"), "The 'cache' parameter", "cache='disk' is not one of"),
    (dict(warm_start="yes"), "The 'warm_start' parameter", "give True or False"),
])
def test_parameters_are_checked_with_sklearns_words_then_ours(params, sklearn_says,
                                                              distgmm_says):
    from sklearn.utils._param_validation import InvalidParameterError

    with pytest.raises(InvalidParameterError, match=re.escape(sklearn_says)) as info:
        GaussianMixture(**params).fit(np.zeros((4, 2)))  # checked before the data
    assert distgmm_says in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("params, message", [
    (dict(weights_init=[0.5, 0.6]), "The parameter 'weights' should be normalized, but got "
     "sum(weights) = 1.10000: divide weights_init by its sum."),
    (dict(weights_init=[1.5, -0.5]), "The parameter 'weights' should be in the range [0, 1], "
     "but got max value -0.50000, min value 1.50000: weights_init must lie in [0, 1] (its "
     "smallest is -0.5, its largest 1.5)"),
    (dict(means_init=np.zeros((3, 2))), "The parameter 'means' should have the shape of "
     "(2, 2), but got (3, 2)"),
    (dict(covariance_type="diag", precisions_init=np.zeros((2, 2))),
     "'diag precision' should be positive: precisions_init"),
    (dict(covariance_type="tied", precisions_init=np.zeros((3, 3))),
     "The parameter 'tied precision' should have the shape of (2, 2), but got (3, 3): "
     "precisions_init for covariance_type='tied' is shaped (n_features, n_features)."),
])
def test_initial_parameters_keep_sklearns_wording(params, message):
    X, _, _ = blobs(n=100, d=2, k=2, seed=17)
    with pytest.raises(ValueError, match=re.escape(message)):
        GaussianMixture(2, **params).fit(X)
