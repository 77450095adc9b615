"""The GEMM E-step kernel: features and natural parameters, float32 compute, buffers."""

import warnings

import numpy as np
import pytest
from conftest import blobs, sklearn_start
from sklearn.mixture import GaussianMixture as SK
from test_numerics import TYPES, random_params

from distgmm import GaussianMixture
from distgmm.numerics import GMMParams, chunk_stats, m_step
from distgmm.numerics.features import fill_quadratic, n_feature_rows, natural_params
from distgmm.numerics.gaussian import log_gaussian_prob
from distgmm.numerics.kmeans import nearest_centres
from distgmm.numerics.suffstats import _normalize_columns, _Workspace


@pytest.mark.parametrize("ct", TYPES)
def test_natural_parameters_score_like_the_log_density(ct):
    """W @ F (+ the shared tied term) equals log w_k + log N(x | m_k, S_k) from Cholesky."""
    rng = np.random.default_rng(0)
    p = random_params(4, 5, ct, seed=1)
    X = rng.normal(scale=3, size=(300, 5)) + 7.0
    center = p.center
    nat = natural_params(p, center)
    F = np.empty((n_feature_rows(ct, 5), 300))
    F[:5] = (X - center).T
    F[5] = 1.0
    fill_quadratic(F, ct, 5)
    got = (nat.W @ F).T
    if nat.tied_factor is not None:
        got -= 0.5 * ((nat.tied_factor @ F[:5]) ** 2).sum(axis=0)[:, None]
    ref = log_gaussian_prob(X, p.means, p.precisions_cholesky, ct) + np.log(p.weights)
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-9)


@pytest.mark.parametrize("ct", TYPES)
def test_float32_compute_stays_close_to_float64(ct):
    rng = np.random.default_rng(2)
    p = random_params(3, 4, ct, seed=3)
    X = rng.normal(scale=3, size=(5000, 4)) + 100.0
    p = type(p).from_covariances(p.weights, p.means + 100.0, p.covariances, ct)
    w = rng.uniform(0.5, 2.0, size=5000)
    a = chunk_stats(X, w, 0, p)
    b = chunk_stats(X, w, 0, p, compute_dtype="float32", tile_rows=700)
    assert b.loglik == pytest.approx(a.loglik, rel=1e-5)
    assert b.wsum == pytest.approx(a.wsum, rel=1e-14) and b.n_rows == a.n_rows
    for name in ("nk", "sx", "s2"):
        x, y = getattr(b, name), getattr(a, name)
        assert x.dtype == np.float64
        np.testing.assert_allclose(x, y, rtol=0, atol=1e-4 * np.abs(y).max(), err_msg=name)


@pytest.mark.parametrize("ct", TYPES)
def test_float32_compute_fit_agrees_with_sklearn(ct):
    X = blobs(4000, d=3, k=3, seed=4, offset=100.0)[0]
    start = sklearn_start(X, 3, ct)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = SK(3, covariance_type=ct, max_iter=20, tol=0, **start).fit(X)
        got = GaussianMixture(3, covariance_type=ct, max_iter=20, tol=0,
                              compute_dtype="float32", **start).fit(X)
    for name in ("weights_", "means_", "covariances_"):
        x, y = getattr(got, name), getattr(ref, name)
        np.testing.assert_allclose(x, y, rtol=0, atol=1e-4 * np.abs(y).max(), err_msg=name)
    assert got.lower_bound_ == pytest.approx(ref.lower_bound_, rel=1e-5)


def test_compute_dtype_is_checked():
    with pytest.raises(ValueError, match="compute_dtype='float16' is not one of"):
        GaussianMixture(2, compute_dtype="float16").fit(np.random.default_rng(0).normal(
            size=(50, 2)))


def test_buffers_are_reused_across_shapes_and_types():
    """One thread's workspace serves chunks of other sizes, types and dtypes correctly."""
    rng = np.random.default_rng(5)
    X = rng.normal(size=(3000, 3))
    results = {}
    for ct in TYPES:
        p = random_params(2, 3, ct, seed=6)
        for dtype in ("float64", "float32", "float64"):
            for n in (3000, 17, 1):
                s = chunk_stats(X[:n], None, 0, p, compute_dtype=dtype)
                key = (ct, dtype, n)
                if key in results:  # the same call after other shapes: the same bits
                    np.testing.assert_array_equal(s.s2, results[key].s2)
                    assert s.loglik == results[key].loglik
                results[key] = s


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_floored_responsibilities_count_as_none(dtype):
    """Responsibilities floored to avoid slow underflow still report an empty component."""
    p = GMMParams.from_covariances(
        np.array([0.5, 0.5]), np.array([[0.0], [1e3]]), np.array([1e-2, 1e-2]), "spherical")
    s = chunk_stats(np.random.default_rng(0).normal(scale=0.1, size=(500, 1)), None, 0, p,
                    compute_dtype=dtype)
    assert 0 < s.nk[1] < 1e-30 * s.wsum
    with pytest.raises(ValueError, match=r"Component\(s\) \[1\] collapsed"):
        m_step(s, reg_covar=1e-6)


def test_rows_no_component_can_explain_are_reported():
    """A row whose every log-density is -inf is an error, not a floored likelihood."""
    p = GMMParams.from_covariances(np.array([1.0, 0.0]), np.zeros((2, 2)),
                                   np.ones(2), "spherical")
    X = np.zeros((5, 2))
    L = np.full((2, 5), -np.inf)
    lpn = _normalize_columns(L, None, _Workspace.get(4, 2, 2, 5, False, "float64"))
    assert np.isnan(lpn).all()
    assert np.isfinite(chunk_stats(X, None, 0, p).loglik)  # a zero weight alone is fine


def test_nearest_centres_match_brute_force():
    rng = np.random.default_rng(7)
    xc = rng.normal(scale=3, size=(1000, 5))
    cc = rng.normal(scale=3, size=(40, 5))
    brute = ((xc[:, None, :] - cc[None, :, :]) ** 2).sum(axis=2)
    labels, d2 = nearest_centres(xc, cc)
    np.testing.assert_array_equal(labels, brute.argmin(axis=1))
    np.testing.assert_allclose(d2, brute.min(axis=1), rtol=1e-10, atol=1e-10)
    assert (nearest_centres(cc[:3], cc)[1] >= 0).all()  # rows on a centre: 0, not -eps


def test_float32_losing_a_covariance_says_to_use_float64():
    """Tight clusters far from the centre: float64 fits, float32 says what to do."""
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(size=(2000, 6)) * 1e-2 + 3e3,
                        rng.normal(size=(2000, 6)) * 1e-2 - 3e3])
    kw = dict(covariance_type="full", reg_covar=0.0, max_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        GaussianMixture(2, **kw).fit(X)
        with pytest.raises(ValueError, match="retry with compute_dtype='float64'"):
            GaussianMixture(2, compute_dtype="float32", **kw).fit(X)


def test_scratch_buffer_is_reused_grown_and_kept_apart_by_tag():
    from distgmm.numerics import scratch

    a = scratch.buffer("test.a", (4, 3))
    b = scratch.buffer("test.a", (2, 5))  # smaller: the same memory
    assert b.shape == (2, 5) and np.shares_memory(a, b) and b.flags.c_contiguous
    c = scratch.buffer("test.b", (4, 3))
    assert not np.shares_memory(a, c)
    big = scratch.buffer("test.a", (10, 10))  # larger: a new buffer, kept from now on
    assert big.shape == (10, 10) and np.shares_memory(big, scratch.buffer("test.a", (3, 3)))


@pytest.mark.parametrize("ct", TYPES)
def test_chunk_rows_give_each_chunk_s_row_bit_for_bit(ct):
    """One kernel call over a run of chunks (chunk_rows) gives each chunk's row as its
    own estep call does: any sizes, empty chunks, weights, float32 input."""
    from distgmm.numerics import suffstats
    from distgmm.numerics.suffstats import HAVE_COMPILED, chunk_rows, chunk_stats_row

    if not HAVE_COMPILED:
        pytest.skip("chunk_rows is the compiled kernel's")

    def one_estep(x, w):  # the kernel's own single-chunk entry point
        center, nat = suffstats.centered_natural_params(p)
        k, d = p.means.shape
        nf = n_feature_rows(ct, d)
        row = np.empty(suffstats.row_width(p))
        xx = row[3 + k * nf :].reshape(d, d) if ct == "tied" else None
        ll, wsum, bad = suffstats._estep.estep(
            x, w, center, nat.W, nat.tied_factor, suffstats.covariance_code(ct),
            suffstats.compiled_tile_rows(ct, d), row[3 : 3 + k * nf].reshape(k, nf), xx)
        row[:3] = len(x), wsum, ll
        return row

    rng = np.random.default_rng(5)
    p = random_params(3, 5, ct)
    sizes = [7, 0, 1, 300, 513, 2, 64]
    X = rng.normal(scale=3, size=(sum(sizes), 5))
    w = rng.uniform(0.5, 2, size=len(X))
    cuts = np.cumsum([0, *sizes])
    for x, wt in [(X, None), (X, w), (X.astype(np.float32), None)]:
        rows = chunk_rows(x, wt, sizes, 100, p)
        assert rows.shape == (len(sizes), len(chunk_stats_row(x[:1], None, 0, p)))
        for i, (a, b) in enumerate(zip(cuts[:-1], cuts[1:])):
            one = chunk_stats_row(x[a:b], None if wt is None else wt[a:b], 100 + a, p)
            np.testing.assert_array_equal(rows[i], one)
            np.testing.assert_array_equal(rows[i], one_estep(x[a:b], None if wt is None
                                                             else wt[a:b]))
        assert rows[1, 0] == 0 and not rows[1].any()  # the empty chunk adds nothing


def test_chunk_rows_name_the_first_bad_row_in_its_own_chunk():
    """A non-finite value in the fourth chunk of a run is reported at its global row,
    counting that chunk's values only (not the next chunk's)."""
    from distgmm.numerics.finite import NonFiniteError
    from distgmm.numerics.suffstats import HAVE_COMPILED, chunk_rows

    if not HAVE_COMPILED:
        pytest.skip("chunk_rows is the compiled kernel's")
    p = random_params(2, 3, "diag")
    X = np.zeros((40, 3))
    X[33, 1] = np.nan
    X[36:, :] = np.inf  # the fifth chunk: not this error's
    with pytest.raises(NonFiniteError) as e:
        chunk_rows(X, None, [10, 10, 10, 5, 5], 1_000_000, p)
    assert (e.value.first_row, e.value.n_values, e.value.span) == (
        1_000_033, 1, (1_000_030, 1_000_034)), str(e.value)


def test_estep_rows_refuses_offsets_that_do_not_make_up_x():
    from distgmm.numerics import suffstats

    if not suffstats.HAVE_COMPILED:
        pytest.skip("estep_rows is the compiled kernel's")
    p = random_params(2, 3, "diag")
    center, nat = suffstats.centered_natural_params(p)
    X, rows = np.zeros((10, 3)), np.empty((2, suffstats.row_width(p)))

    def call(offsets):
        suffstats._estep.estep_rows(X, None, offsets, center, nat.W, None,
                                    suffstats.covariance_code("diag"), 8, rows)

    for bad in ([0, 5, 11], [0, 6, 5], [-1, 5, 10], [0, 5, 9], [1, 5, 10]):
        with pytest.raises(ValueError, match="non-decreasing row offsets from 0 to X's"):
            call(np.array(bad, np.int64))
    with pytest.raises(ValueError, match="1-D int64"):
        call(np.array([0, 5, 10], np.int32))
    call(np.array([0, 5, 10], np.int64))
    assert rows[:, 0].tolist() == [5.0, 5.0]
