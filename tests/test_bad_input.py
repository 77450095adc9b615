"""Bad input gets one clear line naming the problem and the fix."""

import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import NotFittedError

from distgmm import GaussianMixture

X_OK = np.random.default_rng(0).normal(size=(50, 3))


def fitted():
    return GaussianMixture(2, random_state=0).fit(X_OK)


def with_nan():
    X = X_OK.copy()
    X[[3, 9], 1] = np.nan
    X[9, 2] = np.inf
    return X


CASES = [
    ("nan numpy", lambda: GaussianMixture(2).fit(with_nan()),
     r"3 non-finite value\(s\) in 2 row\(s\) between rows 0 and 49, first at row 3, "
     r"column 1"),
    ("string column", lambda: GaussianMixture(2).fit(
        pd.DataFrame({"a": [1.0, 2, 3], "b": ["x", "y", "z"]})),
     r"Non-numeric feature column\(s\) \['b'\]"),
    ("dask string column", lambda: GaussianMixture(1).fit(dd.from_pandas(
        pd.DataFrame({"a": [1.0, 2, 3], "s": ["x", "y", "z"]}), npartitions=1)),
     r"Non-numeric feature column\(s\) \['s'\]"),
    ("n < k", lambda: GaussianMixture(60).fit(X_OK),
     "n_samples >= n_components.*use fewer components"),
    ("n < k dask", lambda: GaussianMixture(60).fit(da.from_array(X_OK, chunks=10)),
     "n_samples >= n_components"),
    ("1-D numpy", lambda: GaussianMixture(2).fit(X_OK[:, 0]),
     "Expected a 2D array, got a 1D array"),
    ("3-D dask", lambda: GaussianMixture(2).fit(da.zeros((4, 3, 2))), "Expected a 2D array"),
    ("empty", lambda: GaussianMixture(2).fit(np.empty((0, 3))), "0 sample"),
    ("empty dask", lambda: GaussianMixture(2).fit(da.zeros((0, 3))), "0 sample"),
    ("feature mismatch", lambda: fitted().predict(X_OK[:, :2]),
     "X has 2 features, but GaussianMixture is expecting 3"),
    ("feature mismatch dask", lambda: fitted().predict(da.from_array(X_OK[:, :2])),
     "X has 2 features, but GaussianMixture is expecting 3"),
    ("bad covariance type", lambda: GaussianMixture(2, covariance_type="ful").fit(X_OK),
     "covariance_type='ful' is not one of"),
    ("bad cache", lambda: GaussianMixture(2, cache="disk").fit(da.from_array(X_OK)),
     "cache='disk' is not one of"),
    ("negative k", lambda: GaussianMixture(-1).fit(X_OK), "n_components=-1: give an integer"),
    ("means_init shape", lambda: GaussianMixture(2, means_init=np.zeros((2, 2))).fit(X_OK),
     r"means_init has shape \(2, 2\); expected \(2, 3\)"),
    ("weights shape", lambda: GaussianMixture(2).fit(X_OK, sample_weight=np.ones(3)),
     r"sample_weight.shape == \(3,\), expected \(50,\)"),
    ("negative weights", lambda: GaussianMixture(2).fit(X_OK, sample_weight=-np.ones(50)),
     "non-negative"),
]


@pytest.mark.parametrize("make, pattern", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_line(make, pattern):
    with pytest.raises(ValueError, match=pattern) as info:
        make()
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("method", ["predict", "predict_proba", "score_samples", "score",
                                    "sample"])
def test_use_before_fit(method):
    arg = 3 if method == "sample" else X_OK
    with pytest.raises(NotFittedError):
        getattr(GaussianMixture(2), method)(arg)


def test_identical_rows_collapse_with_advice():
    with pytest.raises(ValueError, match="collapsed.*fewer components.*reg_covar"):
        GaussianMixture(3, random_state=0).fit(np.ones((40, 2)))


def dask_weights(w):
    return lambda: GaussianMixture(2).fit(da.from_array(X_OK, chunks=10),
                                          sample_weight=da.from_array(w, chunks=10))


@pytest.mark.parametrize("w, pattern", [
    (np.r_[-1.0, np.ones(49)], "non-negative"),
    (np.r_[np.nan, np.ones(49)], "finite"),
    (np.zeros(50), "Every sample_weight is zero"),
    (np.r_[1.0, np.zeros(49)], r"n_samples = 1 \(rows with positive weight\)"),
])
def test_bad_dask_weights(w, pattern):
    with pytest.raises(ValueError, match=pattern):
        dask_weights(w)()


@pytest.mark.parametrize("prec", [[[1.0, 5.0], [0.0, 1.0]], [[1.0, 2.0], [2.0, 1.0]]])
def test_precisions_init_must_be_spd(prec):
    with pytest.raises(ValueError, match="symmetric and positive-definite"):
        GaussianMixture(1, covariance_type="tied", precisions_init=np.array(prec)).fit(
            X_OK[:, :2])
