"""Kernels against naive references; chunking invariance; shifted moments."""

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import multivariate_normal

from distgmm.numerics import GMMParams, chunk_stats, m_step, merge_all
from distgmm.numerics.gaussian import log_gaussian_prob, precision_cholesky
from distgmm.numerics.rng import row_uniforms

TYPES = ["full", "tied", "diag", "spherical"]


def random_params(k, d, ct, seed=0):
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=3, size=(k, d))
    a = rng.normal(size=(k, d, d))
    full = a @ a.transpose(0, 2, 1) + d * np.eye(d)
    cov = {
        "full": full,
        "tied": full[0],
        "diag": np.stack([np.diag(c) for c in full]),
        "spherical": np.array([np.trace(c) / d for c in full]),
    }[ct]
    w = rng.uniform(1, 2, size=k)
    return GMMParams.from_covariances(w / w.sum(), means, cov, ct)


def dense_cov(p: GMMParams, k):
    c = p.covariances
    return {
        "full": lambda: c[k],
        "tied": lambda: c,
        "diag": lambda: np.diag(c[k]),
        "spherical": lambda: c[k] * np.eye(p.n_features),
    }[p.covariance_type]()


def test_numerics_never_imports_dask():
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'dask' or name.startswith('dask.') or name == 'distributed':\n"
        "            raise ImportError('dask is blocked')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import distgmm.numerics, distgmm.numerics.kmeans, distgmm.numerics.predict\n"
        "assert not any(m.startswith('dask') for m in sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("ct", TYPES)
def test_log_prob_matches_scipy(ct):
    p = random_params(3, 4, ct)
    X = np.random.default_rng(1).normal(scale=3, size=(50, 4))
    got = log_gaussian_prob(X, p.means, p.precisions_cholesky, ct)
    for k in range(3):
        ref = multivariate_normal(p.means[k], dense_cov(p, k)).logpdf(X)
        np.testing.assert_allclose(got[:, k], ref, rtol=1e-10)


def test_collapsed_covariance_says_what_to_try():
    with pytest.raises(ValueError, match="reg_covar"):
        precision_cholesky(np.zeros((1, 2, 2)), "full")
    with pytest.raises(ValueError, match="fewer components"):
        precision_cholesky(np.array([[1.0, 0.0], [0.0, -1.0]]), "diag")


def brute_force_stats(X, p, w):
    """Responsibilities and moments the slow, obvious way (scipy densities)."""
    dens = np.column_stack([
        p.weights[k] * multivariate_normal(p.means[k], dense_cov(p, k)).pdf(X)
        for k in range(p.n_components)
    ])
    resp = dens / dens.sum(axis=1, keepdims=True)
    rw = resp * w[:, None]
    nk = rw.sum(0)
    means = rw.T @ X / nk[:, None]
    return np.sum(w * np.log(dens.sum(axis=1))), nk, means, rw


@pytest.mark.parametrize("ct", TYPES)
def test_chunk_stats_and_m_step_match_brute_force(ct):
    rng = np.random.default_rng(2)
    p = random_params(3, 3, ct, seed=3)
    X = rng.normal(scale=3, size=(400, 3))
    w = rng.uniform(0.5, 2.0, size=400)
    s = chunk_stats(X, w, 0, p, tile_rows=97)
    ll, nk, means, rw = brute_force_stats(X, p, w)
    np.testing.assert_allclose(s.loglik, ll, rtol=1e-10)
    np.testing.assert_allclose(s.nk, nk, rtol=1e-10)
    new = m_step(s, reg_covar=1e-6)
    np.testing.assert_allclose(new.means, means, rtol=1e-10)
    scat = np.stack([(rw[:, k, None] * (X - means[k])).T @ (X - means[k]) for k in range(3)])
    nk_eps = nk + 10 * np.finfo(float).eps
    full = scat / nk_eps[:, None, None] + 1e-6 * np.eye(3)
    ref = {
        "full": full,
        "tied": scat.sum(0) / nk_eps.sum() + 1e-6 * np.eye(3),
        "diag": np.diagonal(full, axis1=1, axis2=2),
        "spherical": np.diagonal(full, axis1=1, axis2=2).mean(1),
    }[ct]
    np.testing.assert_allclose(new.covariances, ref, rtol=1e-9)
    np.testing.assert_allclose(new.weights, nk_eps / nk_eps.sum(), rtol=1e-12)


@st.composite
def ragged_cuts(draw, n=300):
    cuts = draw(st.lists(st.integers(0, n), min_size=0, max_size=12))
    return sorted(set(cuts) | {0, n})


@settings(max_examples=25, deadline=None)
@given(cuts=ragged_cuts(), ct=st.sampled_from(TYPES), tile=st.integers(7, 400))
def test_any_chunking_gives_the_same_statistics(cuts, ct, tile):
    rng = np.random.default_rng(4)
    X = rng.normal(scale=2, size=(300, 3)) + 50.0
    w = rng.uniform(0.1, 3, size=300)
    p = random_params(3, 3, ct, seed=5)
    p = GMMParams.from_covariances(p.weights, p.means + 50.0, p.covariances, ct)
    whole = chunk_stats(X, w, 0, p)
    parts = merge_all([chunk_stats(X[a:b], w[a:b], a, p, tile_rows=tile)
                       for a, b in zip(cuts[:-1], cuts[1:])])
    for name in ("loglik", "wsum", "nk", "sx", "s2"):
        np.testing.assert_allclose(getattr(parts, name), getattr(whole, name), rtol=1e-12,
                                   atol=1e-12 * np.abs(getattr(whole, name)).max(), err_msg=name)


def two_pass_covariances(X, resp, ct):
    nk = resp.sum(0) + 10 * np.finfo(float).eps
    means = resp.T @ X / nk[:, None]
    full = np.stack([(resp[:, k, None] * (X - means[k])).T @ (X - means[k]) / nk[k]
                     for k in range(resp.shape[1])])
    return {
        "full": full,
        "tied": np.einsum("k,kij->ij", nk, full) / nk.sum(),
        "diag": np.diagonal(full, axis1=1, axis2=2),
        "spherical": np.diagonal(full, axis1=1, axis2=2).mean(1),
    }[ct]


@pytest.mark.parametrize("ct", TYPES)
def test_large_offset_does_not_cancel(ct):
    rng = np.random.default_rng(6)
    X = 1e6 + rng.normal(size=(2000, 3)) * [1.0, 0.5, 2.0]
    X[:1000, 0] += 4.0
    p = random_params(2, 3, ct, seed=7)
    p = GMMParams.from_covariances(
        np.array([0.5, 0.5]), np.array([[1e6 + 4, 1e6, 1e6], [1e6, 1e6, 1e6]]),
        p.covariances[:2] if ct != "tied" else p.covariances, ct)
    s = chunk_stats(X, None, 0, p, tile_rows=512)
    got = m_step(s, reg_covar=0.0).covariances
    lp = log_gaussian_prob(X - 1e6, p.means - 1e6, p.precisions_cholesky, ct) + np.log(p.weights)
    resp = np.exp(lp - np.logaddexp.reduce(lp, axis=1, keepdims=True))
    np.testing.assert_allclose(got, two_pass_covariances(X, resp, ct), rtol=1e-6)


@pytest.mark.parametrize("ct", TYPES)
def test_float32_offset_stays_finite(ct):
    rng = np.random.default_rng(8)
    X64 = 1e4 + rng.normal(size=(3000, 2))
    X = X64.astype(np.float32)
    p = GMMParams.from_covariances(
        np.array([1.0]), np.array([[1e4, 1e4]]),
        {"full": np.eye(2)[None], "tied": np.eye(2), "diag": np.ones((1, 2)),
         "spherical": np.ones(1)}[ct], ct)
    got = m_step(chunk_stats(X, None, 0, p), reg_covar=0.0).covariances
    assert np.all(np.isfinite(got))
    ref = two_pass_covariances(X.astype(np.float64), np.ones((3000, 1)), ct)
    np.testing.assert_allclose(got, ref, rtol=1e-3)


@pytest.mark.parametrize("n_cols", [1, 3, 5, 8])
def test_row_uniforms_do_not_depend_on_chunking(n_cols):
    whole = row_uniforms((3, 1), 0, 100, n_cols)
    cuts = [(0, 7), (7, 61), (61, 62), (62, 100)]
    parts = np.vstack([row_uniforms((3, 1), a, b - a, n_cols) for a, b in cuts])
    np.testing.assert_array_equal(whole, parts)
    assert len(np.unique(whole)) == whole.size  # no number drawn twice
    assert not np.array_equal(whole, row_uniforms((3, 2), 0, 100, n_cols))


def test_empty_component_is_reported():
    p = GMMParams.from_covariances(
        np.array([0.5, 0.5]), np.array([[0.0], [1e6]]), np.array([1e-4, 1e-4]), "spherical")
    s = chunk_stats(np.zeros((10, 1)), None, 0, p)
    with pytest.raises(ValueError, match=r"Component\(s\) \[1\] collapsed.*fewer components"):
        m_step(s, reg_covar=1e-6)


@given(st.lists(st.integers(0, 6), min_size=0, max_size=60), st.integers(1, 20))
@settings(max_examples=60, deadline=None)
def test_keep_smallest_matches_a_full_sort(keys, n_keep):
    """Partition-then-sort keeps the same rows, in the same order, as sorting them all
    (ties broken by row index; non-finite keys dropped)."""
    from distgmm.numerics.kmeans import _keep_smallest

    k = np.array(keys, dtype=float)
    k[::7] = np.inf
    X = np.arange(2 * len(k), dtype=float).reshape(-1, 2)
    got = _keep_smallest(k, X, 100, n_keep)
    ids = np.arange(100, 100 + len(k))[np.isfinite(k)]
    want = np.lexsort((ids, k[np.isfinite(k)]))[:n_keep]
    np.testing.assert_array_equal(got.row_ids, ids[want])
    np.testing.assert_array_equal(got.keys, k[np.isfinite(k)][want])
    np.testing.assert_array_equal(got.rows, X[ids[want] - 100])


@pytest.mark.parametrize("ties", [False, True])
def test_smallest_keys_are_those_lexsort_orders_first(ties):
    from distgmm.numerics.kmeans import smallest

    rng = np.random.default_rng(7)
    keys = rng.exponential(size=5000)
    if ties:  # equal keys among the kept ones and across the cut: ids decide
        keys[rng.integers(0, 5000, 400)] = np.sort(keys)[100]
    ids = rng.permutation(5000)
    for n_keep in (0, 1, 150, 4999, 5000, 6000):
        np.testing.assert_array_equal(smallest(keys, ids, n_keep),
                                      np.lexsort((ids, keys))[:n_keep])
