"""Dask input on a real distributed cluster, lazy outputs, and the compute count."""

import warnings

import dask
import dask.array as da
import numpy as np
import pytest
from conftest import blobs, sklearn_start
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture as SK
from test_estimator import assert_same_model

from distgmm import GaussianMixture

TYPES = ["full", "tied", "diag", "spherical"]
RAGGED = ((300, 0, 1, 799, 0, 400, 300), (2, 2))


def ragged(X):
    return da.from_array(X, chunks=(100, 2)).rechunk(RAGGED)


@pytest.mark.parametrize("ct", TYPES)
def test_distributed_ragged_chunks_match_sklearn(client, ct):
    X, _, _ = blobs(n=1800, d=4, k=3, seed=21)
    start = sklearn_start(X, 3, ct)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref = SK(3, covariance_type=ct, max_iter=20, tol=0, **start).fit(X)
        got = GaussianMixture(3, covariance_type=ct, max_iter=20, tol=0, **start).fit(ragged(X))
    assert_same_model(got, ref)


class CountingScheduler:
    """A synchronous scheduler that counts how often it is asked to compute."""

    def __init__(self):
        self.calls = 0

    def __call__(self, dsk, keys, **kwargs):
        self.calls += 1
        return dask.get(dsk, keys, **kwargs)


@pytest.mark.parametrize("cache, extra", [("none", 0), ("memory", 1)])
def test_exactly_one_compute_per_iteration(cache, extra):
    X, _, _ = blobs(n=900, d=3, seed=22)
    start = sklearn_start(X, 3, "full")
    counter = CountingScheduler()
    gm = GaussianMixture(3, max_iter=7, tol=0, cache=cache, **start)
    with dask.config.set(scheduler=counter), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        labels = gm.fit_predict(da.from_array(X, chunks=150))
    assert gm.n_iter_ == 7
    assert counter.calls == 7 + extra  # + one persist for cache="memory"; predict is lazy
    assert isinstance(labels, da.Array)


def test_same_bits_as_numpy_for_the_same_blocks():
    X, _, _ = blobs(n=1000, d=3, seed=23)
    start = sklearn_start(X, 3, "tied")
    kw = dict(covariance_type="tied", max_iter=10, tol=0, **start)
    with warnings.catch_warnings(), dask.config.set(scheduler="threads"):
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = GaussianMixture(3, **kw).fit(X)
        b = GaussianMixture(3, **kw).fit(da.from_array(X, chunks=(len(X), 3)))
    for attr in ("means_", "covariances_", "weights_", "lower_bound_"):
        np.testing.assert_array_equal(getattr(a, attr), getattr(b, attr))


def test_reruns_on_the_cluster_are_bit_identical(client):
    X, _, _ = blobs(n=2000, d=3, k=4, seed=24)
    Xd = da.from_array(X, chunks=250)
    a = GaussianMixture(4, random_state=3).fit(Xd)
    b = GaussianMixture(4, random_state=3).fit(Xd)
    np.testing.assert_array_equal(a.means_, b.means_)
    np.testing.assert_array_equal(a.covariances_, b.covariances_)
    assert a.lower_bounds_ == b.lower_bounds_


@pytest.mark.parametrize("init", ["kmeans", "k-means++", "random", "random_from_data"])
def test_initialisation_does_not_depend_on_chunking(init):
    X, _, _ = blobs(n=1500, d=2, k=3, seed=25)
    kw = dict(init_params=init, random_state=5, max_iter=3, tol=0)
    with warnings.catch_warnings(), dask.config.set(scheduler="threads"):
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = GaussianMixture(3, **kw).fit(X)
        b = GaussianMixture(3, **kw).fit(da.from_array(X, chunks=(137, 2)))
    np.testing.assert_allclose(a.means_, b.means_, rtol=1e-9)


def test_lazy_predict_family_on_dask(client):
    X, _, _ = blobs(n=1800, d=3, seed=26)
    Xd = ragged(np.hstack([X, X[:, :1]]))
    gm = GaussianMixture(3, random_state=0).fit(Xd)
    Xn = Xd.compute()
    for method, shape in [("predict", (1800,)), ("predict_proba", (1800, 3)),
                          ("score_samples", (1800,))]:
        out = getattr(gm, method)(Xd)
        assert isinstance(out, da.Array) and out.chunks[0] == Xd.chunks[0]
        computed = out.compute()
        assert computed.shape == shape
        np.testing.assert_allclose(computed, getattr(gm, method)(Xn), rtol=1e-12)
    assert gm.score(Xd) == pytest.approx(gm.score(Xn), rel=1e-12)
    labels = gm.fit_predict(Xd)
    assert isinstance(labels, da.Array)
    np.testing.assert_array_equal(labels.compute(), gm.predict(Xn))


def test_dask_dataframe_and_weights(client):
    dd = pytest.importorskip("dask.dataframe")
    pd = pytest.importorskip("pandas")
    X, _, _ = blobs(n=900, d=2, seed=27)
    w = np.random.default_rng(1).uniform(0.2, 3.0, size=len(X))
    df = pd.DataFrame(X, columns=["x", "y"])
    ddf = dd.from_pandas(df, npartitions=4)
    start = sklearn_start(X, 3, "full")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = GaussianMixture(3, max_iter=10, tol=0, **start).fit(df, sample_weight=w)
        b = GaussianMixture(3, max_iter=10, tol=0, **start).fit(
            ddf, sample_weight=dd.from_pandas(pd.Series(w), npartitions=4))
    assert list(b.feature_names_in_) == ["x", "y"]
    np.testing.assert_allclose(b.means_, a.means_, rtol=1e-10)
    np.testing.assert_allclose(b.covariances_, a.covariances_, rtol=1e-10)
    labels = b.predict(ddf)  # a Series on the frame's index, as the frame's users expect
    assert isinstance(labels, dd.Series) and labels.name == "label"
    np.testing.assert_array_equal(labels.compute().index, df.index)
    np.testing.assert_array_equal(labels.compute().to_numpy(), a.predict(df))


def test_nan_in_one_chunk_says_where(client):
    X, _, _ = blobs(n=600, d=2, seed=28)
    X[437, 1] = np.nan
    with pytest.raises(ValueError, match=r"1 non-finite value\(s\) in 1 row\(s\), first at "
                                         r"row 437, column 1"):
        GaussianMixture(2, random_state=0).fit(da.from_array(X, chunks=200))


def test_integer_column_labels_are_not_feature_names():
    dd = pytest.importorskip("dask.dataframe")
    pd = pytest.importorskip("pandas")
    X, _, _ = blobs(n=300, d=2, seed=29)
    with dask.config.set(scheduler="threads"):
        gm = GaussianMixture(2, random_state=0).fit(dd.from_pandas(pd.DataFrame(X), 3))
        assert not hasattr(gm, "feature_names_in_")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            gm.predict(X)


def test_out_of_core_chunks_are_read_inside_the_pass_task(client, tmp_path):
    """Zarr and Parquet chunks are loaded inside the task that uses them (one task per
    chunk, nothing queued in worker memory between a read and its use); the statistics
    are those of the whole array, out of core, persisted, and in process alike."""
    import pandas as pd
    import zarr

    from distgmm import open_source
    from distgmm.numerics.suffstats import chunk_stats, merge
    from distgmm.parallel.blocks import dask_blocks

    X, _, _ = blobs(n=4000, d=3, seed=25)
    z = zarr.create_array(store=str(tmp_path / "x.zarr"), shape=X.shape, chunks=(500, 3),
                          dtype="f8")
    z[:] = X
    (tmp_path / "pq").mkdir()
    for i in range(4):
        pd.DataFrame(X[i * 1000:(i + 1) * 1000], columns=list("abc")).to_parquet(
            tmp_path / "pq" / f"part{i}.parquet")
    params = GaussianMixture(3, max_iter=2, random_state=0).fit(X).fitted_params()
    ref = chunk_stats(X, None, 0, params)
    graphs = []

    def graph_size(dsk, keys, **kwargs):
        graphs.append(len(dict(dsk.__dask_graph__())))
        return dask.get(dsk, keys, **kwargs)

    sources = [open_source(str(tmp_path / "x.zarr"), chunk_bytes=1000 * 3 * 8).load().X,
               open_source(str(tmp_path / "pq")).load().X,
               da.from_array(X, chunks=(1000, 3))]
    # the opened Zarr array (small) is copied into each task; chunks of an array held by
    # the driver are data, not tasks, and stay graph keys
    for Xd, shared in zip(sources, [0, 0, 4]):
        blocks = dask_blocks(Xd, cache="none")
        with dask.config.set(scheduler=graph_size):
            got = blocks.map_reduce(chunk_stats, merge, params)
        assert graphs[-1] == len(blocks.blocks) + shared
        on_cluster = blocks.map_reduce(chunk_stats, merge, params)
        persisted = dask_blocks(Xd, cache="memory").map_reduce(chunk_stats, merge, params)
        for stats in (got, on_cluster, persisted):
            np.testing.assert_allclose(stats.s2, ref.s2, rtol=1e-12)
            np.testing.assert_allclose(stats.sx, ref.sx, rtol=1e-12, atol=1e-9)
            assert stats.loglik == pytest.approx(ref.loglik, rel=1e-12)


def test_fold_inputs_copies_small_literals_and_keeps_shared_work():
    from dask._task_spec import Task, TaskRef

    from distgmm.parallel._dask import fold_inputs

    def add(a, b):
        return a + b

    big, small = np.zeros(100_000), np.ones(3)
    graph = {
        "big": big, "small": small,
        "shared": Task("shared", add, TaskRef("small"), 1.0),  # used by both chunks
        ("x", 0): Task(("x", 0), add, TaskRef("big"), TaskRef("shared")),
        ("x", 1): Task(("x", 1), add, TaskRef("shared"), TaskRef("small")),
    }
    folded = fold_inputs(graph, [("x", 0), ("x", 1)])
    assert folded[("x", 0)].dependencies == {"big", "shared"}  # 800 kB stays a key
    assert folded[("x", 1)].dependencies == {"shared"}  # the small literal is copied
    assert folded[("x", 1)]({"shared": np.full(3, 2.0)}).tolist() == [3.0] * 3


@pytest.mark.parametrize("ct", ["full", "diag"])
def test_small_persisted_chunks_are_packed_with_the_same_bits(client, ct):
    """cache="memory" packs 60 small chunks into a few blocks on the cluster; the
    kernels still see each 50-row chunk, so the fit has the bits of the unpacked data
    (read out of core) and of the threaded scheduler, and outputs keep the chunks."""
    from distgmm.parallel import blocks as blocks_mod

    X, _, _ = blobs(n=3000, d=3, k=3, seed=25)
    w = np.random.default_rng(4).uniform(0.5, 2.0, len(X))
    Xd, wd = da.from_array(X, chunks=(50, 3)), da.from_array(w, chunks=50)
    kw = dict(covariance_type=ct, max_iter=6, tol=0, random_state=1)
    made = []
    real = blocks_mod.dask_blocks

    def spy(*a, **k):
        made.append(real(*a, **k))
        return made[-1]

    with warnings.catch_warnings(), pytest.MonkeyPatch.context() as mp:
        warnings.simplefilter("ignore", ConvergenceWarning)
        mp.setattr("distgmm.estimator.dask_blocks", spy)
        packed = GaussianMixture(3, cache="memory", **kw)
        labels = packed.fit_predict(Xd, sample_weight=wd)
        streamed = GaussianMixture(3, cache="none", **kw).fit(Xd, sample_weight=wd)
        with dask.config.set(scheduler="threads"):
            threaded = GaussianMixture(3, cache="memory", **kw).fit(Xd, sample_weight=wd)
    fit_blocks = made[0]
    assert fit_blocks.leaves is not None and len(fit_blocks.blocks) < Xd.numblocks[0] // 2
    assert sum(map(len, fit_blocks.leaves)) == Xd.numblocks[0]
    assert made[2].leaves is None  # no distributed client: nothing to pack for
    for other in (streamed, threaded):
        for attr in ("means_", "covariances_", "weights_", "lower_bounds_"):
            np.testing.assert_array_equal(getattr(packed, attr), getattr(other, attr))
    assert labels.chunks == (Xd.chunks[0],)
    np.testing.assert_array_equal(labels.compute(), packed.predict(X))


def test_small_zarr_chunks_are_packed_by_one_read_task_per_block(client, tmp_path):
    """cache="memory" over many small Zarr chunks: each packed block is one task that
    reads its chunks itself (not a task per chunk and a rechunk), with the bits of the
    rechunk route and of the out-of-core fit; a numpy array in the graph keeps the
    rechunk."""
    import zarr

    from distgmm.parallel import _dask
    from distgmm.parallel import blocks as blocks_mod

    X, _, _ = blobs(n=3000, d=3, k=3, seed=27)
    w = np.random.default_rng(5).uniform(0.5, 2.0, len(X))
    for name, a, chunks in (("x", X, (50, 3)), ("w", w, (50,))):
        z = zarr.create_array(store=str(tmp_path / f"{name}.zarr"), shape=a.shape,
                              chunks=chunks, dtype="f8")
        z[:] = a
    Xd, wd = (da.from_zarr(str(tmp_path / f"{n}.zarr")) for n in ("x", "w"))
    kw = dict(covariance_type="full", max_iter=5, tol=0, random_state=2)
    made = []
    real = blocks_mod._packed_by_reads

    def spy(arr, plan):
        made.append(real(arr, plan))
        return made[-1]

    with warnings.catch_warnings(), pytest.MonkeyPatch.context() as mp:
        warnings.simplefilter("ignore", ConvergenceWarning)
        mp.setattr(blocks_mod, "_packed_by_reads", spy)
        by_reads = GaussianMixture(3, cache="memory", **kw).fit(Xd, sample_weight=wd)
        assert [m is not None for m in made] == [True, True]
        assert all(m.numblocks[0] < Xd.numblocks[0] // 2 for m in made)
        assert all(len(m.__dask_graph__()) == m.numblocks[0] for m in made)  # a task each
        made.clear()
        with _dask.private_routes(False):
            rechunked = GaussianMixture(3, cache="memory", **kw).fit(Xd, sample_weight=wd)
        assert made == [None, None]
        made.clear()
        GaussianMixture(3, cache="memory", **kw).fit(da.from_array(X, chunks=(50, 3)))
        assert made == [None]  # numpy chunks in the graph: not reads
        streamed = GaussianMixture(3, cache="none", **kw).fit(Xd, sample_weight=wd)
    for other in (rechunked, streamed):
        for attr in ("means_", "covariances_", "weights_", "lower_bounds_"):
            np.testing.assert_array_equal(getattr(by_reads, attr), getattr(other, attr))


def test_arrays_built_on_the_user_s_persisted_chunks_fit_cached_and_out_of_core(client):
    """A rechunk of persisted chunks (two column chunks made one), and weights the user
    persisted: their futures stay dependencies of the folded tasks (a Future is no
    literal to copy in), with the bits of the same rows never persisted."""
    from distributed import wait

    X, _, _ = blobs(n=3000, d=6, k=3, seed=28)
    w = np.random.default_rng(6).uniform(0.5, 2.0, len(X))
    Xp = client.persist(da.from_array(X, chunks=(50, 3)))
    wp = client.persist(da.from_array(w, chunks=100))
    wait([Xp, wp])
    kw = dict(covariance_type="diag", max_iter=4, tol=0, random_state=3)
    Xd, wd = da.from_array(X, chunks=(50, 6)), da.from_array(w, chunks=50)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        want = GaussianMixture(3, **kw).fit(Xd)
        want_w = GaussianMixture(3, **kw).fit(Xd, sample_weight=wd)
        for cache in ("memory", "none"):
            got = GaussianMixture(3, cache=cache, **kw).fit(Xp)
            got_w = GaussianMixture(3, cache=cache, **kw).fit(Xd, sample_weight=wp)
            for a, b in ((got, want), (got_w, want_w)):
                for attr in ("means_", "covariances_", "lower_bounds_"):
                    np.testing.assert_array_equal(getattr(a, attr), getattr(b, attr))


def test_data_the_user_persisted_is_not_copied_into_packed_blocks(client):
    from distributed import wait

    from distgmm.parallel.blocks import dask_blocks

    Xp = da.from_array(blobs(n=3000, d=3, k=3, seed=26)[0], chunks=(50, 3)).persist()
    wait(Xp)
    blocks = dask_blocks(Xp, cache="memory")
    assert blocks.leaves is None and blocks.X.name == Xp.name


def test_pack_plan_groups_consecutive_chunks_only_when_it_pays():
    from distgmm.parallel.blocks import PACK_BYTES, pack_plan

    small = (500,) * 1000  # 64 KB chunks of 16 float64 features
    plan = pack_plan(small, 128, threads=2)
    assert [i for g in plan for i in g] == list(range(1000))  # consecutive, all, once
    assert len(plan) == 8  # 64 MB over 4 blocks per thread, under PACK_BYTES each
    big = (PACK_BYTES // 128,) * 10
    assert pack_plan(big, 128, threads=2) is None  # nothing to gain
    with_empty = (100, 0, 100, 100) * 8  # empty chunks ride along in their block
    plan = pack_plan(with_empty, 8, threads=1)
    assert [i for g in plan for i in g] == list(range(32)) and len(plan) <= 16
