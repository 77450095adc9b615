"""scikit-learn's own GaussianMixture tests, run against distgmm.GaussianMixture.

The tests are not copied: the test functions of the INSTALLED
``sklearn/mixture/tests/test_gaussian_mixture.py`` are collected here under their own
names, with their own ``pytest.mark.parametrize`` sets, and an autouse fixture swaps
that module's ``GaussianMixture`` for distgmm's while each one runs. A new scikit-learn
release's tests join automatically; the ones that cannot apply are in ``EXCLUDED``,
each with its reason.

Then scikit-learn's estimator checks (``parametrize_with_checks``) on
``GaussianMixture(n_components=2)``, with the one expected failure declared as
scikit-learn >= 1.6 declares its own (``expected_failed_checks``; scikit-learn 1.9 has
no estimator tag for it).
"""

import importlib
import inspect

import numpy as np
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

import distgmm

SK = importlib.import_module("sklearn.mixture.tests.test_gaussian_mixture")

_PRIVATE_FUNCTIONS = (
    "tests scikit-learn's private module functions (_estimate_gaussian_covariances_*, "
    "_compute_precision_cholesky, _compute_log_det_cholesky, _estimate_log_gaussian_prob)"
    " alone: no GaussianMixture, so nothing of distgmm would run"
)
_ARRAY_API = (
    "array API dispatch (torch, cupy, array_api_strict namespaces): distgmm computes "
    "with numpy and dask and does not take part in scikit-learn's array API support"
)

EXCLUDED = {
    "test_suffstat_sk_full": _PRIVATE_FUNCTIONS,
    "test_suffstat_sk_tied": _PRIVATE_FUNCTIONS,
    "test_suffstat_sk_diag": _PRIVATE_FUNCTIONS,
    "test_gaussian_suffstat_sk_spherical": _PRIVATE_FUNCTIONS,
    "test_compute_log_det_cholesky": _PRIVATE_FUNCTIONS,
    "test_gaussian_mixture_log_probabilities": _PRIVATE_FUNCTIONS,
    "test_gaussian_mixture_precisions_init": (
        "calls the private methods _set_parameters and _initialize(X, resp) of "
        "scikit-learn's BaseMixture; distgmm's start is GaussianMixture._initial on "
        "blocks of data (its precisions_init path is covered by "
        "test_gaussian_mixture_precisions_init_diag and test_check_precisions)"
    ),
    "test_gaussian_mixture_all_init_does_not_estimate_gaussian_parameters": (
        "counts calls of scikit-learn's private _estimate_gaussian_parameters through a "
        "mock; distgmm's M-step is its own (numerics.mstep) and never calls it"
    ),
    "test_gaussian_mixture_setting_best_params": (
        "reg_covar=0 with two components collapsed onto single samples: scikit-learn "
        "carries on with variances of about 4e-16, pure rounding noise (distgmm's moment "
        "form gives -2e-17 for the same components), so distgmm raises its collapse "
        "error instead of returning a degenerate model; pinned by "
        "tests/test_estimator.py::test_singleton_components_with_reg_covar_zero_raise"
    ),
    "test_regularisation": (
        "its first half (reg_covar=0 on two distinct points raises scikit-learn's "
        "ill-defined-covariance sentence) passes and is pinned by tests/test_estimator.py"
        "::test_reg_covar_zero_on_two_points_raises_sklearns_message; its second half "
        "fits 10 components to 2 distinct points with reg_covar=1e-6, where 8 components "
        "get no responsibility at all: scikit-learn keeps them with weight ~1e-16, "
        "distgmm's M-step (numerics.mstep.check_collapse) reports them as collapsed"
    ),
    "test_gaussian_mixture_precisions_init_diag": (
        "it asserts that the default start takes as many EM iterations as a start from "
        "scikit-learn's k-means labels; distgmm's default start is a mixture already "
        "fitted to a sample on the driver, so EM on all rows needs fewer "
        "(tests/test_init.py holds the start to scikit-learn's final log-likelihood)"
    ),
    "test_gaussian_mixture_array_api_compliance": _ARRAY_API,
    "test_gaussian_mixture_raises_where_array_api_not_implemented": _ARRAY_API,
}
"""scikit-learn tests not run against distgmm, and why."""

EXPECTED_FAILED_CHECKS: dict = {}
"""None: since the default start clusters small weighted data whole with weighted
k-means, weighted rows and repeated rows start EM alike
(check_sample_weight_equivalence_on_dense_data passes)."""


def _sklearn_tests() -> dict:
    return {name: fn for name, fn in inspect.getmembers(SK, inspect.isfunction)
            if name.startswith("test_") and fn.__module__ == SK.__name__}


SELECTED = sorted(set(_sklearn_tests()) - set(EXCLUDED))
globals().update({name: _sklearn_tests()[name] for name in SELECTED})  # collected here


@pytest.fixture(autouse=True)
def _distgmm_as_gaussian_mixture(monkeypatch):
    monkeypatch.setattr(SK, "GaussianMixture", distgmm.GaussianMixture)


# scikit-learn's conftest fixtures the tests ask for, at scikit-learn's defaults
# (float32 runs only on request there; distgmm's fitted attributes are float64)
@pytest.fixture
def global_dtype():
    return np.float64


@pytest.fixture
def global_random_seed():
    return 42


def test_every_exclusion_names_a_sklearn_test():
    assert set(EXCLUDED) <= set(_sklearn_tests())
    assert len(SELECTED) >= 25  # 29 with scikit-learn 1.9


def test_the_swap_reaches_the_tests():
    assert SK.GaussianMixture is distgmm.GaussianMixture


@parametrize_with_checks([distgmm.GaussianMixture(n_components=2)],
                         expected_failed_checks=lambda estimator: EXPECTED_FAILED_CHECKS)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)
