"""The compiled E-step (``distgmm/numerics/_estep.c``) against the numpy tiles and numpy's exp.

The numpy kernel (``chunk_stats_numpy``) is an independent implementation of the same
statistics (numpy GEMMs, numpy exp); ``test_numerics`` checks both against brute force
through ``chunk_stats``.
"""

import platform
import subprocess
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from test_numerics import TYPES, random_params

from distgmm.numerics import GMMParams
from distgmm.numerics import suffstats as ss
from distgmm.numerics.features import n_feature_rows, natural_params
from distgmm.options import covariance_code


def test_the_compiled_kernel_is_built():
    assert ss.HAVE_COMPILED, (
        "distgmm.numerics._estep is missing: reinstall with a C compiler present "
        "(pip install -e .); fits now run on the slower numpy tiles"
    )


def test_without_the_compiled_kernel_fits_run_on_numpy_with_a_warning():
    """Importing warns of nothing; the first float64 fit warns once, later fits do not,
    and the results are the numpy kernel's (the same to rounding)."""
    code = """
import importlib.abc, sys, warnings
class NoKernel(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.startswith("distgmm.numerics._estep"):
            raise ImportError("no compiler")
sys.meta_path.insert(0, NoKernel())
warnings.simplefilter("error")
from distgmm.numerics import suffstats, kernel_info
import numpy as np
from distgmm import GaussianMixture
assert not suffstats.HAVE_COMPILED
assert kernel_info()["kernel"] == "numpy" and "no compiler" in kernel_info()["reason"]
X = np.random.default_rng(0).normal(size=(500, 2))
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    lb = GaussianMixture(2, random_state=0).fit(X).lower_bound_
    GaussianMixture(2, random_state=0).fit(X)
assert [str(w.message)[:60] for w in caught] == [
    "distgmm's compiled E-step (distgmm/numerics/_estep.c) is not"], caught
assert caught[0].category is RuntimeWarning and "no compiler" in str(caught[0].message)
print(lb)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    from distgmm import GaussianMixture

    X = np.random.default_rng(0).normal(size=(500, 2))
    assert float(r.stdout) == pytest.approx(
        GaussianMixture(2, random_state=0).fit(X).lower_bound_, rel=1e-12)


def test_a_missing_extension_file_is_named_in_kernel_info():
    code = """
import importlib.machinery
find_spec = importlib.machinery.PathFinder.find_spec
def no_kernel(name, path=None, target=None):
    return None if name.startswith("distgmm.numerics._estep") else find_spec(name, path, target)
importlib.machinery.PathFinder.find_spec = staticmethod(no_kernel)
from distgmm.numerics import kernel_info
print(kernel_info()["reason"])
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == (
        "the compiled kernel is unavailable (built with DISTGMM_NO_COMPILED_KERNEL=1?): no "
        "distgmm.numerics._estep extension is installed")


@pytest.fixture
def no_kernel(monkeypatch):
    """As if distgmm were installed without the compiled kernel (never warned yet)."""
    monkeypatch.setattr(ss, "HAVE_COMPILED", False)
    monkeypatch.setattr(ss, "_warned", False)
    monkeypatch.setattr(ss, "_NO_KERNEL_REASON", "ImportError: test")
    return np.random.default_rng(1).normal(size=(300, 2))


def test_the_missing_kernel_warns_once_at_the_first_float64_fit(no_kernel):
    from distgmm import GaussianMixture

    X = no_kernel
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        GaussianMixture(2, random_state=0, compute_dtype="float32").fit(X)
        assert not caught  # float32 fits run on numpy whatever is installed
        GaussianMixture(2, random_state=0).fit(X)
        GaussianMixture(2, random_state=1, n_init=3).fit(X)  # restarts in threads
    assert len(caught) == 1 and caught[0].category is RuntimeWarning
    assert "is not available (ImportError: test), so fits run on the numpy kernel" in str(
        caught[0].message)
    assert "distgmm info --system" in str(caught[0].message)


def test_the_missing_kernel_warning_survives_restarts_in_threads(no_kernel):
    # the first fit runs restarts (and their k-means starts) in threads: the warning
    # must come before them, and no restart may leave warnings switched off
    from distgmm import GaussianMixture

    X = no_kernel
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for seed in range(3):
            GaussianMixture(3, random_state=seed, n_init=4).fit(X)
        warnings.warn("still heard", UserWarning)
    messages = [str(w.message) for w in caught]
    assert sum("numpy kernel" in m for m in messages) == 1
    assert "still heard" in messages


def test_a_built_kernel_never_warns(monkeypatch):
    monkeypatch.setattr(ss, "_warned", False)
    assert ss.HAVE_COMPILED and not ss.warn_if_no_kernel("float64")
    assert ss.kernel_info()["kernel"] in ("compiled", "compiled-avx2")


def test_the_kernel_defines_the_type_codes_python_checks():
    """_estep.c's table of covariance types and its count of feature rows are the ones of
    options.COVARIANCE_TYPES and features.n_feature_rows (checked at import)."""
    from distgmm.numerics import _estep
    from distgmm.options import COVARIANCE_TYPES

    modules = [_estep, ss._estep]
    for module in modules:
        assert module.COVARIANCE_TYPES == COVARIANCE_TYPES
        for ct in COVARIANCE_TYPES:
            for d in range(0, 40):
                assert module.n_feature_rows(covariance_code(ct), d) == n_feature_rows(ct, d)
        for bad in ((4, 3), (-1, 3), (0, -1)):
            with pytest.raises(ValueError, match="unknown covariance type code"):
                module.n_feature_rows(*bad)
    assert _estep.TARGET == "generic"
    assert ss.kernel_info()["kernel"] == (
        "compiled-avx2" if ss._estep.TARGET == "avx2-fma" else "compiled")


@pytest.mark.parametrize("attrs, message", [
    ({}, r"its covariance types by code are None"),
    ({"COVARIANCE_TYPES": ("full", "diag", "tied", "spherical")},
     r"its covariance types by code are \('full', 'diag', 'tied', 'spherical'\)"),
    ({"COVARIANCE_TYPES": ("full", "tied", "diag", "spherical"),
      "n_feature_rows": lambda code, d: d + 2 if code == 2 else d + 1},
     r"it counts 2 feature rows for full with 1 features, features.n_feature_rows 3"),
])
def test_a_kernel_from_other_sources_is_refused_at_import(attrs, message):
    import types

    fake = types.SimpleNamespace(__name__="distgmm.numerics._estep", __file__="x.so", **attrs)
    with pytest.raises(ImportError, match=message + r".*built from other sources: "
                                                     r"reinstall distgmm") as info:
        ss._check_kernel(fake)
    assert info.value.name == "distgmm.numerics._estep"
    ss._check_kernel(ss._estep)  # the installed one passes


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"),
                    reason="the AVX2 build exists on x86-64 only")
@pytest.mark.parametrize("ct", TYPES)
def test_the_avx2_build_agrees_with_the_generic_one(ct):
    from distgmm.numerics import _estep, _estep_avx2

    if _estep.cpu_has_avx2_fma():
        assert ss._estep is _estep_avx2
    rng = np.random.default_rng(7)
    p = random_params(7, 6, ct, seed=8)
    X = rng.normal(scale=3, size=(999, 6))
    w = rng.uniform(0, 2, size=999)
    nat = natural_params(p, p.center)
    out = []
    for module in ([_estep, _estep_avx2] if _estep.cpu_has_avx2_fma() else [_estep]):
        acc = np.empty((7, n_feature_rows(ct, 6)))
        xx = np.empty((6, 6)) if ct == "tied" else None
        sums = module.estep(X, w, p.center, nat.W, nat.tied_factor, covariance_code(ct), 64,
                            acc, xx)
        out.append((sums, acc, xx))
    ref = ss.chunk_stats_numpy(X, w, 0, p)
    for (loglik, wsum, bad), acc, xx in out:
        assert bad == -1 and wsum == pytest.approx(ref.wsum, rel=1e-14)
        assert loglik == pytest.approx(ref.loglik, rel=1e-12)
        np.testing.assert_allclose(acc[:, 6], ref.nk, rtol=1e-12)
        if ct == "tied":
            np.testing.assert_allclose(xx, ref.s2, rtol=1e-12)


def assert_same_stats(a, b, rtol=1e-12):
    assert a.n_rows == b.n_rows
    assert a.wsum == pytest.approx(b.wsum, rel=1e-14)
    assert a.loglik == pytest.approx(b.loglik, rel=rtol)
    for name in ("nk", "sx", "s2"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.shape == y.shape and x.dtype == np.float64, name
        np.testing.assert_allclose(x, y, rtol=0, atol=rtol * np.abs(y).max(), err_msg=name)


# K from 1 to 9 covers every remainder of the 4-component register blocks; d = 3 and 4
# give an odd and an even number of feature rows for the 2-feature blocks
@pytest.mark.parametrize("ct", TYPES)
@pytest.mark.parametrize("k,d", [(1, 3), (2, 4), (3, 3), (4, 4), (5, 3), (9, 4)])
@pytest.mark.parametrize("weighted", [False, True])
def test_compiled_matches_the_numpy_tiles(ct, k, d, weighted):
    rng = np.random.default_rng(k * 10 + d)
    p = random_params(k, d, ct, seed=k + d)
    X = rng.normal(scale=4, size=(1003, d)) + 50.0
    p = GMMParams.from_covariances(p.weights, p.means + 50.0, p.covariances, ct)
    w = rng.uniform(0.0, 3.0, size=1003) if weighted else None
    ref = ss.chunk_stats_numpy(X, w, 0, p)
    for tile in (None, 1, 7, 8, 97, 2000):
        assert_same_stats(ss.chunk_stats_compiled(X, w, 0, p, tile), ref)


@pytest.mark.parametrize("ct", TYPES)
def test_float32_input_is_read_as_float64(ct):
    rng = np.random.default_rng(5)
    p = random_params(3, 5, ct, seed=6)
    X32 = rng.normal(scale=3, size=(777, 5)).astype(np.float32)
    got = ss.chunk_stats_compiled(X32, None, 0, p)
    assert_same_stats(got, ss.chunk_stats_compiled(X32.astype(np.float64), None, 0, p), 0)
    # and from a strided, non-float view
    Xi = np.asfortranarray(np.round(X32 * 10).astype(np.int32))
    assert_same_stats(ss.chunk_stats_compiled(Xi, None, 0, p),
                      ss.chunk_stats_numpy(Xi.astype(np.float64), None, 0, p))


def test_responsibilities_follow_numpy_exp_across_the_floor():
    """Two equal components whose weights differ by a factor exp(gap), gap from 0 to
    -740, scored at their common mean: the scores are exactly the constants ``b_k`` of
    ``W``, so the only arithmetic left is the exponential. The compiled one (range
    reduction + polynomial) agrees with numpy's to a few ulp; beyond the floor
    (exp(-700)) the smaller share is exp(-700) of the larger, never zero."""
    gaps = np.concatenate([-np.linspace(0, 740, 1481), -np.geomspace(1e-12, 1, 13)])
    for gap in gaps:
        logw = np.array([0.0, gap]) - np.logaddexp(0.0, gap)
        p = GMMParams.from_covariances(np.exp(logw), np.zeros((2, 1)), np.ones(2),
                                       "spherical")
        b = natural_params(p, p.center).W[:, 1]
        s = ss.chunk_stats_compiled(np.zeros((1, 1)), None, 0, p)
        e = np.exp(max(b[1] - b[0], -700.0))
        np.testing.assert_allclose(s.nk, [1 / (1 + e), e * (1 / (1 + e))], rtol=1e-15, atol=0)
        assert s.loglik == pytest.approx(b[0] + np.log1p(e), rel=1e-15, abs=1e-15)


def test_non_finite_rows_are_named():
    p = random_params(3, 4, "full", seed=1)
    X = np.random.default_rng(0).normal(size=(1000, 4))
    X[300, 2] = np.nan
    X[301, 0] = np.inf
    with pytest.raises(ValueError, match=r"2 non-finite value\(s\) in 2 row\(s\) between "
                                         r"rows 1256 and 1319, first at row 1300, column 2"):
        ss.chunk_stats_compiled(X, None, 1000, p, tile_rows=64)


def test_threads_share_nothing():
    """The GIL is released and each thread has its own workspace: concurrent chunks of
    different shapes give the bits of serial calls."""
    rng = np.random.default_rng(3)
    jobs = []
    for i, ct in enumerate(TYPES * 3):
        d = 2 + i % 5
        jobs.append((rng.normal(size=(4000 + 100 * i, d)), random_params(1 + i % 6, d, ct, i)))
    serial = [ss.chunk_stats_compiled(X, None, 0, p) for X, p in jobs]
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(lambda job: ss.chunk_stats_compiled(job[0], None, 0, job[1]),
                                 jobs))
    for a, b in zip(threaded, serial):
        assert_same_stats(a, b, rtol=0)


def test_binding_rejects_arrays_that_do_not_fit():
    p = random_params(2, 3, "diag", seed=0)
    nat = natural_params(p, p.center)
    X = np.zeros((10, 3))
    acc = np.empty((2, n_feature_rows("diag", 3)))
    with pytest.raises(ValueError, match="X: expected a 2-D float64 or float32 array"):
        ss._estep.estep(X.astype(np.int64), None, p.center, nat.W, None, 2, 8, acc, None)
    with pytest.raises(ValueError, match="center: expected 3 contiguous items"):
        ss._estep.estep(X, None, p.center[:2].copy(), nat.W, None, 2, 8, acc, None)
    with pytest.raises(ValueError, match="tied only"):
        ss._estep.estep(X, None, p.center, nat.W, np.eye(3), 2, 8, acc, None)
    with pytest.raises(ValueError, match="acc: expected 14 contiguous items"):
        ss._estep.estep(X, None, p.center, nat.W, None, 2, 8, acc[:, :5].copy(), None)
    for W in (nat.W.T.copy(), nat.W.ravel(), nat.W.astype(np.float32)):
        with pytest.raises(ValueError, match=r"W \(float64, K x feature rows\)"):
            ss._estep.estep(X, None, p.center, W, None, 2, 8, acc, None)


def test_a_tile_larger_than_the_chunk_is_the_chunk():
    """The workspace is sized by min(tile, rows): a huge tile once overflowed its size
    computation and wrote outside it."""
    p = random_params(2, 3, "diag", seed=0)
    X = np.random.default_rng(1).normal(size=(50, 3))
    ref = ss.chunk_stats_compiled(X, None, 0, p, tile_rows=50)
    for tile in (51, 2**40, 2**60, 2**62):
        assert_same_stats(ss.chunk_stats_compiled(X, None, 0, p, tile_rows=tile), ref, rtol=0)
    assert_same_stats(ss.chunk_stats_compiled(X, None, 0, p), ref, rtol=1e-14)
