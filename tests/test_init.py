"""The default sampled start: its pass count, its chunking independence, its quality."""

from __future__ import annotations

import warnings

import dask.array as da
import numpy as np
import pytest
from sklearn import datasets
from sklearn.mixture import GaussianMixture as SkGaussianMixture
from sklearn.preprocessing import StandardScaler

import distgmm
from distgmm.parallel import init as init_mod
from distgmm.parallel.blocks import dask_blocks, numpy_blocks


class CountingBlocks:
    """Blocks that count the passes made over them."""

    def __init__(self, blocks):
        self._blocks = blocks
        self.passes = 0

    def map_reduce(self, *args):
        self.passes += 1
        return self._blocks.map_reduce(*args)

    def __getattr__(self, name):
        return getattr(self._blocks, name)


def _mixture(n, k=4, d=5, seed=0):
    rng = np.random.default_rng(seed)
    means = rng.normal(0, 6, (k, d))
    labels = rng.integers(0, k, n)
    return means[labels] + rng.normal(size=(n, d)), labels


@pytest.mark.parametrize("ct", ["full", "tied", "diag", "spherical"])
def test_kmeans_start_reads_the_data_once(ct):
    X, _ = _mixture(30_000)
    blocks = CountingBlocks(numpy_blocks(X, block_rows=4_000))
    params = init_mod.initial_params(blocks, 4, ct, 1e-6, "kmeans", 7)
    assert blocks.passes == 1
    assert params.means.shape == (4, 5) and np.isclose(params.weights.sum(), 1.0)


def test_k_means_parallel_is_still_offered_and_costs_more_passes():
    X, _ = _mixture(30_000)
    blocks = CountingBlocks(numpy_blocks(X, block_rows=4_000))
    init_mod.initial_params(blocks, 4, "diag", 1e-6, "k-means||", 7)
    assert blocks.passes > 2


def test_weighted_small_data_takes_a_second_pass_with_weighted_kmeans():
    X, _ = _mixture(2_000)
    w = np.random.default_rng(1).integers(1, 4, len(X)).astype(float)
    blocks = CountingBlocks(numpy_blocks(X, w, block_rows=500))
    params = init_mod.initial_params(blocks, 4, "full", 1e-6, "kmeans", 7)
    assert blocks.passes == 2
    # the weights the M-step divides by are the data's total weight
    assert np.isclose(params.weights.sum(), 1.0)


def test_sample_does_not_depend_on_the_chunking():
    X, _ = _mixture(50_000)
    seed, m = 11, 20_000
    a = init_mod.draw_sample(numpy_blocks(X, block_rows=50_000), seed, m)
    b = init_mod.draw_sample(dask_blocks(da.from_array(X, chunks=(997, 5)), None,
                                         cache="memory"), seed, m)
    np.testing.assert_array_equal(a[0], b[0])
    assert not a[2] and len(a[0]) == m
    # a uniform sample: each row's inclusion probability is m / n
    assert abs(np.isin(X, a[0]).all(axis=1).mean() - m / len(X)) < 0.01


def test_small_data_is_sampled_whole_in_its_own_order():
    X, _ = _mixture(1_000)
    rows, weights, whole = init_mod.draw_sample(numpy_blocks(X, block_rows=300), 3, 5_000)
    assert whole
    np.testing.assert_array_equal(rows, X)
    np.testing.assert_array_equal(weights, np.ones(len(X)))


def test_data_of_exactly_the_sample_size_is_sampled_whole():
    """A sample holding every row of positive weight is the whole data: also with
    exactly n_sample rows, or with more rows of which the extra ones weigh nothing."""
    X, _ = _mixture(1_000)
    rows, weights, whole = init_mod.draw_sample(numpy_blocks(X, block_rows=300), 3, 1_000)
    assert whole
    np.testing.assert_array_equal(rows, X)
    np.testing.assert_array_equal(weights, np.ones(len(X)))
    X, _ = _mixture(1_200, seed=1)
    w = np.random.default_rng(2).integers(1, 4, len(X)).astype(float)
    w[::6] = 0.0  # 1,000 rows of positive weight
    rows, weights, whole = init_mod.draw_sample(numpy_blocks(X, w, block_rows=300), 3,
                                                1_000)
    assert whole
    np.testing.assert_array_equal(rows, X[w > 0])
    np.testing.assert_array_equal(weights, w[w > 0])


@pytest.mark.parametrize("weighted", [False, True])
def test_data_of_exactly_the_sample_size_gets_the_whole_data_start(weighted):
    # not the sampled start (shuffled rows, unit weights, up to 16 local fits): the
    # start of data smaller than the sample (in order, its weights, scikit-learn's start)
    X, _ = _mixture(2_000)
    w = np.random.default_rng(1).integers(1, 4, len(X)).astype(float) if weighted else None

    def start(n_sample):
        return init_mod.sampled_start(numpy_blocks(X, w, block_rows=500), 4, "full", 1e-6,
                                      7, n_sample=n_sample, local_random_state=0)

    exact, smaller = start(len(X)), start(len(X) + 1)
    np.testing.assert_array_equal(exact.means, smaller.means)
    np.testing.assert_array_equal(exact.precisions_cholesky, smaller.precisions_cholesky)


def test_start_is_the_same_for_two_chunkings():
    X, _ = _mixture(40_000)
    a = init_mod.initial_params(numpy_blocks(X, block_rows=40_000), 4, "full", 1e-6,
                                "kmeans", 5)
    b = init_mod.initial_params(
        dask_blocks(da.from_array(X, chunks=(3_001, 5)), None, cache="memory"),
        4, "full", 1e-6, "kmeans", 5)
    np.testing.assert_array_equal(a.means, b.means)
    np.testing.assert_array_equal(a.precisions_cholesky, b.precisions_cholesky)


@pytest.mark.parametrize("name,k", [("iris", 3), ("wine", 3), ("breast_cancer", 2)])
@pytest.mark.parametrize("ct", ["full", "diag"])
def test_final_fit_is_not_worse_than_scikit_learns_on_bundled_data(name, k, ct):
    """Held to a tolerance, not a 95 % rate: benchmarks/init_quality.py measures that."""
    X, _ = getattr(datasets, f"load_{name}")(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    for seed in range(2):
        ours = distgmm.GaussianMixture(k, covariance_type=ct, random_state=seed).fit(X)
        theirs = SkGaussianMixture(k, covariance_type=ct, random_state=seed).fit(X)
        assert ours.score(X) >= theirs.score(X) - 1e-2


@pytest.mark.parametrize("ct", ["full", "diag"])
def test_default_start_is_never_below_sklearns_on_data_sampled_whole(ct):
    """The first restart's local fit draws from the user's random_state as scikit-learn
    does, so on data small enough to be sampled whole the default fit ends at least at
    scikit-learn's default fit (digits, K=10: single starts spread over 8 nats)."""
    import warnings

    X = datasets.load_digits().data.astype(float)[:900]
    for seed in range(3):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = SkGaussianMixture(10, covariance_type=ct, random_state=seed).fit(X).score(X)
            got = distgmm.GaussianMixture(10, covariance_type=ct,
                                          random_state=seed).fit(X).score(X)
        assert got >= ref - 1e-6, (seed, got, ref)


def test_sample_bound_sends_fewer_rows_and_keeps_the_same_sample(monkeypatch):
    """Unit-weight chunks send only keys below a bound: the same sample, and in the
    (1e-31) case of too few keys below it, a second pass without it."""
    from distgmm.numerics import kmeans

    X, _ = _mixture(60_000)
    blocks = dask_blocks(da.from_array(X, chunks=(5_000, 5)), None, cache="memory")
    plain = blocks.map_reduce(kmeans.uniform_rows, kmeans.KeyedRows.merge, (11, 0),
                              20_001, True)
    sent = []
    real = kmeans.uniform_rows

    def counting(*args, **kwargs):
        out = real(*args, **kwargs)
        sent.append(len(out.rows))
        return out

    monkeypatch.setattr(init_mod, "uniform_rows", counting)
    blocks = CountingBlocks(numpy_blocks(X, block_rows=5_000))
    rows, weights, whole = init_mod.draw_sample(blocks, 11, 20_000)
    np.testing.assert_array_equal(rows, plain.rows[:20_000])
    assert not whole and blocks.passes == 1
    # 12 chunks of 5,000 rows: about a third of each chunk, not all of it
    assert sum(sent) < 25_000 and max(sent) < 5_000
    # a bound too low to hold the sample: a second pass, the same rows
    monkeypatch.setattr(init_mod, "key_bound", lambda n, k: 0.01)
    sent.clear()
    blocks = CountingBlocks(numpy_blocks(X, block_rows=5_000))
    again, _, whole = init_mod.draw_sample(blocks, 11, 20_000)
    np.testing.assert_array_equal(again, rows)
    assert not whole and blocks.passes == 2


def test_key_bound_holds_the_smallest_keys():
    from distgmm.numerics.kmeans import key_bound

    rng = np.random.default_rng(0)
    for n, k in [(1_000_000, 20_001), (50_000, 4_001), (100_000, 20_001)]:
        keys = -np.log1p(-rng.random(n))
        bound = key_bound(n, k)
        below = int((keys < bound).sum())
        assert k <= below < k + 20 * np.sqrt(k)  # holds them, with a small margin
    assert key_bound(30_000, 20_001) == np.inf  # would keep most rows: no bound


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_local_fit_on_a_sample_is_scikit_learns_fit(covariance_type):
    """On a sample of larger data the local start is fitted by distgmm's kernel: the
    same k-means start, M-step and stopping rule as scikit-learn's mixture."""
    from sklearn.mixture import GaussianMixture

    X, _ = _mixture(5_000, k=4, d=5, seed=3)
    for seed in (0, 7):
        ours, bound = init_mod._one_local_fit(X, 4, covariance_type, 1e-6, seed, False)
        gm = GaussianMixture(4, covariance_type=covariance_type, random_state=seed).fit(X)
        assert bound == pytest.approx(gm.lower_bound_, abs=1e-9)
        np.testing.assert_allclose(ours.means, gm.means_, atol=1e-6)
        np.testing.assert_allclose(ours.weights, gm.weights_, atol=1e-8)


def test_local_fit_that_collapses_is_left_to_scikit_learn(monkeypatch):
    from sklearn.mixture import GaussianMixture

    from distgmm.numerics.gaussian import CollapseError

    def collapse(*args):
        raise CollapseError("component 2 collapsed")

    monkeypatch.setattr(init_mod, "_own_local_fit", collapse)
    X, _ = _mixture(3_000, k=3, d=4, seed=4)
    params, bound = init_mod._one_local_fit(X, 3, "full", 1e-6, 5, False)
    gm = GaussianMixture(3, random_state=5).fit(X)
    assert bound == gm.lower_bound_
    np.testing.assert_array_equal(params.means, gm.means_)


def test_local_fit_does_not_swallow_the_no_kernel_warning(monkeypatch):
    import distgmm
    from distgmm.numerics import suffstats

    monkeypatch.setattr(suffstats, "HAVE_COMPILED", False)
    monkeypatch.setattr(suffstats, "_warned", False)
    X = np.random.default_rng(0).normal(size=(30_000, 3))  # sampled, not whole
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        distgmm.GaussianMixture(2, compute_dtype="float32", random_state=0,
                                max_iter=2).fit(X)
        distgmm.GaussianMixture(2, random_state=0, max_iter=2).fit(X)
    assert any("compiled E-step" in str(w.message) for w in seen)
