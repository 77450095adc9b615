"""select_model: the true K by BIC, each candidate equal to its own fit, shared passes."""

import warnings

import dask
import dask.array as da
import numpy as np
import pytest
from conftest import blobs
from sklearn.exceptions import ConvergenceWarning

from distgmm import GaussianMixture, select_model
from distgmm.estimator import SharedPasses


@pytest.mark.parametrize("k", [2, 3, 4, 5, 6])
def test_bic_finds_the_true_k(k):
    X = blobs(n=300 * k, d=2, k=k, seed=40 + k, spread=0.6)[0]
    best, table = select_model(X, n_components=range(1, 9), covariance_type=("full", "diag"),
                               n_init=2, random_state=0)
    assert best.n_components == k, table[["n_components", "covariance_type", "bic"]]
    assert len(table) == 16 and table.bic.notna().all()


def test_each_candidate_equals_its_separate_fit_and_passes_are_shared():
    X = blobs(n=1500, d=3, k=3, seed=2, spread=1.5)[0]
    Xd = da.from_array(X, chunks=250)
    calls = []

    def counting(dsk, keys, **kwargs):
        calls.append(1)
        return dask.get(dsk, keys, **kwargs)

    kw = dict(tol=1e-4, max_iter=40, random_state=5, cache="none")
    with dask.config.set(scheduler=counting), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        best, table = select_model(Xd, n_components=[2, 3, 4], covariance_type=("full", "tied"),
                                   n_init=2, **kw)
        sweep_calls = len(calls)
        separate_calls = 0
        for _, row in table.iterrows():
            calls.clear()
            gm = GaussianMixture(row.n_components, covariance_type=row.covariance_type,
                                 n_init=2, **kw).fit(Xd)
            separate_calls += len(calls) + 1  # + its own scoring pass
            assert gm.lower_bound_ == row.lower_bound
            assert gm.bic(Xd) == pytest.approx(row.bic, rel=1e-12)
            if (row.n_components, row.covariance_type) == (best.n_components,
                                                             best.covariance_type):
                np.testing.assert_array_equal(gm.means_, best.means_)
                np.testing.assert_array_equal(gm.covariances_, best.covariances_)
    assert table.attrs["passes"] <= sweep_calls
    assert sweep_calls < 0.5 * separate_calls


def test_failed_candidates_are_reported_not_fatal():
    X = np.vstack([np.zeros((50, 2)), np.ones((50, 2))])  # two distinct points
    best, table = select_model(X, n_components=[1, 2, 3, 200], random_state=0)
    assert best.n_components == 2
    assert "only 100 rows" in table.set_index("n_components").loc[200, "error"]
    assert table.set_index("n_components").loc[3, "error"]  # a collapsed component
    with pytest.raises(ValueError, match="criterion="):
        select_model(X, criterion="likelihood")


def test_shared_passes_fit_and_score_each_model_as_its_own_fit():
    X = blobs(n=900, d=2, k=3, seed=7)[0]
    grid = [(2, "full"), (3, "diag"), (901, "full")]
    kw = dict(n_init=2, random_state=1, max_iter=30)
    models = [GaussianMixture(k, covariance_type=ct, **kw) for k, ct in grid]
    infos = []
    shared = SharedPasses(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        errors = shared.fit(models, callback=infos.append, labels=["a", "b", "c"])
        alone = [GaussianMixture(k, covariance_type=ct, **kw).fit(X) for k, ct in grid[:2]]
    assert errors[:2] == [None, None] and "only 900 rows" in str(errors[2])
    assert not hasattr(models[2], "means_")
    assert {i.candidate for i in infos} == {"a", "b"}
    fit_passes = shared.passes
    assert fit_passes > max(m.n_iter_ for m in models[:2])  # the starts' passes, then EM
    logliks = shared.total_log_likelihood(models[:2])
    assert shared.passes == fit_passes + 1  # one pass scores them all
    for m, ref, loglik in zip(models, alone, logliks):
        np.testing.assert_array_equal(m.means_, ref.means_)
        np.testing.assert_array_equal(m.covariances_, ref.covariances_)
        assert m.lower_bounds_ == ref.lower_bounds_
        assert ref.bic(X) == pytest.approx(
            -2 * loglik + m._n_parameters() * np.log(shared.n_samples), rel=1e-12)


def test_shared_passes_check_parameters_before_any_pass():
    X = blobs(n=100, d=2, k=2, seed=8)[0]
    with pytest.raises(ValueError, match="n_components=0: give an integer"):
        SharedPasses(X).fit([GaussianMixture(2), GaussianMixture(0)])
    with pytest.raises(ValueError, match="The parameter 'means' should have the shape"):
        SharedPasses(X).fit([GaussianMixture(2, means_init=np.zeros((2, 3)))])
