"""The reduction tree: any split of the work gives the numpy engine's tree and bits."""

from __future__ import annotations

import os
from collections import Counter

import dask
import dask.array as da
import numpy as np
import pytest
from conftest import blobs
from hypothesis import given, settings
from hypothesis import strategies as st

from distgmm.parallel.colocate import colocated_groups
from distgmm.parallel.reduction import (
    dask_map_reduce,
    fold_tree,
    numpy_map_reduce,
    tree_combine_local,
)


def show(a, b):
    """A combine that records the exact tree shape (not associative as text)."""
    return f"({a}+{b})"


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 40), st.integers(2, 9), st.data())
def test_folding_any_groups_gives_the_local_tree(n, split_every, data):
    owner = data.draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    nodes = {}
    for g in set(owner):  # each group folds what it can, the driver the rest
        mine = {(0, j): str(j) for j in range(n) if owner[j] == g}
        nodes.update(fold_tree(mine, n, show, split_every))
    (total,) = fold_tree(nodes, n, show, split_every).values()
    assert total == tree_combine_local([str(j) for j in range(n)], show, split_every)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 200), st.integers(2, 9), st.data())
def test_folding_runs_of_rows_gives_the_leaf_by_leaf_nodes(n, split_every, data):
    """_fold_run (a run of leaves' rows at once, whole sibling groups added vectorised)
    leaves the same nodes, bit for bit, as folding its leaves one by one; runs cut
    anywhere, put in any order, spread over tasks, end at the local tree's total."""
    from distgmm.parallel.reduction import _fold_run, _fold_up

    rng = np.random.default_rng(n * 10 + split_every)
    rows = rng.normal(size=(n, 4)) * 10.0 ** rng.integers(-8, 9, size=(n, 4))
    cuts = sorted(set(data.draw(st.lists(st.integers(1, max(n - 1, 1)), max_size=12))) - {n})
    runs = list(zip([0, *cuts], [*cuts, n]))
    order = data.draw(st.permutations(range(len(runs))))
    owner = data.draw(st.lists(st.integers(0, 2), min_size=len(runs), max_size=len(runs)))
    driver: dict = {}
    for task in set(owner):
        by_run, by_leaf = {}, {}
        for r in order:
            if owner[r] != task:
                continue
            a, b = runs[r]
            _fold_run(by_run, a, rows[a:b].copy(), n, split_every)
            for j in range(a, b):
                by_leaf[(0, j)] = rows[j].copy()
                _fold_up(by_leaf, j, n, np.add, split_every)
        assert by_run.keys() == by_leaf.keys()
        for key in by_run:
            np.testing.assert_array_equal(by_run[key], by_leaf[key])
        driver.update(by_run)
    (total,) = fold_tree(driver, n, np.add, split_every).values()
    np.testing.assert_array_equal(total, tree_combine_local(list(rows), np.add, split_every))


@pytest.mark.parametrize("weighted", [False, True])
def test_small_chunks_held_in_a_row_go_through_the_kernel_as_one_run(monkeypatch, weighted):
    """A group task's small chunks at consecutive positions are one kernel call
    (copied together), with the nodes and bits of one call per chunk; gaps, larger
    chunks and a different dtype start a new run."""
    from test_numerics import random_params

    from distgmm.numerics.suffstats import HAVE_COMPILED, chunk_stats, merge
    from distgmm.parallel import reduction

    if not HAVE_COMPILED:
        pytest.skip("runs are the compiled kernel's")
    rng = np.random.default_rng(7)
    params = random_params(3, 4, "full")
    sizes = [30] * 12 + [5000] + [30] * 6 + [17] * 5
    positions = [*range(12), 13, *range(20, 26), *range(26, 31)]
    xs = [rng.normal(scale=3, size=(n, 4)) for n in sizes]
    xs[-3] = xs[-3].astype(np.float32)  # position 28: alone, between two runs
    ws = [rng.uniform(0.5, 2, n) if weighted else None for n in sizes]
    starts = [40 * j for j in positions]  # rows do not matter here, only error messages
    runs = []
    real = reduction._Folder.put_run
    monkeypatch.setattr(reduction._Folder, "put_run",
                        lambda self, first, x, w, s, r: (runs.append((first, len(s))),
                                                         real(self, first, x, w, s, r)))

    def nodes(run_bytes):
        monkeypatch.setattr(reduction, "RUN_CHUNK_BYTES", run_bytes)
        return reduction.unpacked(reduction.tree_nodes(
            chunk_stats, merge, 3, 40, positions, xs, ws, starts, params), merge)

    got, runs_taken = nodes(16 << 10), list(runs)
    runs.clear()
    want = nodes(0)
    assert runs_taken == [(0, 12), (20, 8), (29, 2)] and runs == []  # 28 is float32
    monkeypatch.setattr(reduction, "RUN_ROWS_BYTES", 1)  # a kernel call per leaf of a run
    by_one = nodes(16 << 10)
    for other in (want, by_one):
        assert got.keys() == other.keys()
        for key in got:  # the E-step's rows, before they become statistics
            np.testing.assert_array_equal(got[key], other[key])


def test_the_driver_ends_a_tree_of_rows_and_statistics_alike():
    """end_tree: nodes that came as rows fold as rows; should some tasks send
    statistics (a worker without the compiled kernel), every row becomes statistics
    first. Both give the numpy engine's statistics, bit for bit."""
    from test_numerics import random_params

    from distgmm.numerics.suffstats import HAVE_COMPILED, chunk_stats, chunk_stats_row, merge
    from distgmm.parallel.reduction import end_tree

    if not HAVE_COMPILED:
        pytest.skip("rows are the compiled kernel's")
    params = random_params(2, 3, "tied")
    xs = np.array_split(np.random.default_rng(8).normal(scale=3, size=(200, 3)), 20)
    keys = [(0, j) for j in range(20)]
    want = tree_combine_local([chunk_stats(x, None, 0, params) for x in xs], merge, 4)
    rows = [chunk_stats_row(x, None, 0, params) for x in xs]
    as_rows = ("rows", keys[:12], np.stack(rows[:12]))
    for parts in ([as_rows, ("rows", keys[12:], np.stack(rows[12:]))],
                  [as_rows, dict(zip(keys[12:], (chunk_stats(x, None, 0, params)
                                                  for x in xs[12:])))]):
        got = end_tree(parts, 20, merge, (params,), 4)
        for attr in ("nk", "sx", "s2"):
            np.testing.assert_array_equal(getattr(got, attr), getattr(want, attr))
        assert (got.loglik, got.wsum, got.n_rows) == (want.loglik, want.wsum, want.n_rows)


def _where(X, w, row_start):
    return [(row_start, os.getpid())]


def _concat(a, b):
    return a + b


def _rows(X, w, row_start):
    return X.sum(axis=0)


def _add(a, b):
    return a + b


def _weighted_rows(X, w, row_start):
    return w @ X


def test_persisted_chunks_one_task_per_worker_thread_same_bits(client):
    from distributed import get_task_stream, wait

    from distgmm import GaussianMixture
    from distgmm.numerics.suffstats import chunk_stats, merge

    X, _, _ = blobs(n=4000, d=3, seed=31)
    Xd = client.persist(da.from_array(X, chunks=(500, 3)))
    wait(Xd)
    blocks = [(i, 500 * i) for i in range(8)]
    assert colocated_groups(dict(Xd.__dask_graph__()), [(Xd.name, i, 0) for i in range(8)])
    with get_task_stream(client) as ts:
        where = dask_map_reduce(Xd, None, blocks, _where, _concat, (), split_every=3)
    assert [r for r, _ in where] == [s for _, s in blocks]  # pass order kept
    # single-threaded workers: one task per holding worker for up to a fair share of
    # its chunks (8 chunks / 2 threads), one task per chunk beyond it
    held = Counter(sorted(a)[0] for a in client.who_has(Xd).values())
    assert len(ts.data) == sum(1 + max(0, n - 4) for n in held.values())

    params = GaussianMixture(3, max_iter=2, random_state=0).fit(X).fitted_params()
    for split_every in (2, 3, 8):
        got = dask_map_reduce(Xd, None, blocks, chunk_stats, merge, (params,), split_every)
        ref = numpy_map_reduce(X, None, blocks, chunk_stats, merge, (params,), split_every)
        for attr in ("nk", "sx", "s2"):
            np.testing.assert_array_equal(getattr(got, attr), getattr(ref, attr))
        assert got.loglik == ref.loglik


def test_chunks_beyond_a_fair_share_get_their_own_tasks(client):
    from distributed import get_task_stream, wait

    X, _, _ = blobs(n=4000, d=3, seed=32)
    first = sorted(client.nthreads())[0]
    Xd = client.persist(da.from_array(X, chunks=(500, 3)), workers=[first])
    wait(Xd)
    keys = [(Xd.name, i, 0) for i in range(8)]
    groups = colocated_groups(dict(Xd.__dask_graph__()), keys)
    assert groups == [[0, 1, 2, 3], [4], [5], [6], [7]]  # fair share: 8 chunks / 2 threads
    blocks = [(i, 500 * i) for i in range(8)]
    with get_task_stream(client) as ts:
        total = dask_map_reduce(Xd, None, blocks, _rows, _add, (), split_every=3)
    assert len(ts.data) == 5
    np.testing.assert_array_equal(total, numpy_map_reduce(X, None, blocks, _rows, _add, (), 3))


def test_weights_not_persisted_keep_a_task_per_chunk(client):
    from distributed import get_task_stream, wait

    X, _, _ = blobs(n=4000, d=3, seed=33)
    w = np.random.default_rng(0).uniform(0, 2, size=4000)
    Xd = client.persist(da.from_array(X, chunks=(500, 3)))
    wait(Xd)
    wd = da.from_array(w, chunks=500)  # lazy: the group tasks could not take it as data
    keys = [(Xd.name, i, 0) for i in range(8)]
    graph = {**dict(Xd.__dask_graph__()), **dict(wd.__dask_graph__())}
    assert colocated_groups(graph, keys) is not None
    assert colocated_groups(graph, keys, also=[(wd.name, i) for i in range(8)]) is None
    blocks = [(i, 500 * i) for i in range(8)]
    with get_task_stream(client) as ts:
        total = dask_map_reduce(Xd, wd, blocks, _weighted_rows, _add, (), split_every=3)
    level0 = [t["key"] for t in ts.data if "_weighted_rows" in str(t["key"])]
    assert sorted(k[2] for k in level0 if k[1] == 0) == list(range(8))  # a task per chunk
    np.testing.assert_allclose(
        total, numpy_map_reduce(X, w, blocks, _weighted_rows, _add, (), 3), rtol=1e-13)


def test_placement_is_asked_once_per_ttl(client, monkeypatch):
    from distributed import wait

    from distgmm.parallel import colocate

    Xd = client.persist(da.from_array(np.ones((400, 2)), chunks=(100, 2)))
    wait(Xd)
    graph, keys = dict(Xd.__dask_graph__()), [(Xd.name, i, 0) for i in range(4)]
    asked = []
    who_has = type(client).who_has
    monkeypatch.setattr(type(client), "who_has",
                        lambda self, *a, **k: asked.append(1) or who_has(self, *a, **k))
    first = colocated_groups(graph, keys)
    assert first and colocated_groups(graph, keys) == first and len(asked) == 1
    monkeypatch.setattr(colocate, "PLACEMENT_TTL", 0.0)
    assert colocated_groups(graph, keys) == first and len(asked) == 2


def test_no_groups_without_a_distributed_client():
    X = da.from_array(np.ones((40, 2)), chunks=(10, 2)).persist(scheduler="threads")
    keys = [(X.name, i, 0) for i in range(4)]
    assert colocated_groups(dict(X.__dask_graph__()), keys) is None
    with dask.config.set(scheduler="threads"):
        total = dask_map_reduce(X, None, [(i, 10 * i) for i in range(4)], _rows, _add, ())
    np.testing.assert_array_equal(total, [40.0, 40.0])


def test_a_fit_s_later_out_of_core_passes_reuse_the_read_plan(tmp_path, monkeypatch):
    import zarr

    from distgmm.parallel import _dask
    from distgmm.parallel.blocks import dask_blocks

    z = zarr.create_array(store=str(tmp_path / "x.zarr"), shape=(400, 2), chunks=(10, 2),
                          dtype="f8")
    z[:] = np.arange(800.0).reshape(400, 2)
    folds = []
    real = _dask.fold_inputs
    monkeypatch.setattr(_dask, "fold_inputs", lambda *a: folds.append(a) or real(*a))
    blocks = dask_blocks(da.from_zarr(str(tmp_path / "x.zarr")), cache="none")
    with dask.config.set(scheduler="threads", num_workers=2):
        first = blocks.map_reduce(_rows, _add)
        again = blocks.map_reduce(_rows, _add)
    np.testing.assert_array_equal(first, z[:].sum(axis=0))
    np.testing.assert_array_equal(again, first)
    assert len(folds) == 1 and len(blocks.plans) == 1
    (groups,) = [plan[1] for plan in blocks.plans.values()]
    assert groups is not None  # 40 chunks on 2 threads: streamed, coalesced groups
    other = dask_blocks(da.from_zarr(str(tmp_path / "x.zarr")), cache="none")
    with dask.config.set(scheduler="threads", num_workers=2):
        other.map_reduce(_rows, _add)
    assert len(folds) == 2  # each fit builds its own


def test_spread_targets_moves_few_chunks_to_even_out_rows():
    from distgmm.parallel.colocate import spread_targets

    def on(*names):
        return [{n} for n in names]

    two = {"a": 1, "b": 1}
    assert spread_targets(on(*"aaaabbbb"), [10] * 8, two) is None
    assert spread_targets(on(*"aaaaabbb"), [10] * 8, two) == list("aaaabbbb")
    # one read cut into 8 chunks, 7 left on its worker: 3 move, the rest stay
    got = spread_targets(on(*"aaaaaaab"), [10] * 8, two)
    assert got[:4] == ["a"] * 4 and Counter(got) == {"a": 4, "b": 4}
    # chunks a pass fetched to the other worker too (replicas): balanced as they are
    assert spread_targets([{"a"}] * 4 + [{"a", "b"}] * 4, [10] * 8, two) is None
    assert spread_targets([{"a", "b"}] * 4 + [{"b"}] * 4, [10] * 8, two) is None
    # unequal chunks, a little uneven: left alone
    assert spread_targets(on(*"aab"), [10, 10, 17], two) is None
    # shares follow threads; a holder that is gone counts as nowhere
    assert Counter(spread_targets(on(*"aaaaaa"), [10] * 6, {"a": 1, "b": 2})) == \
        {"a": 2, "b": 4}
    assert Counter(spread_targets(on("gone", "a", "b"), [10] * 3, {"a": 1, "b": 2})) == \
        {"a": 1, "b": 2}


def test_spread_persisted_evens_out_chunks_and_keeps_rows_aligned(client):
    from distributed import wait

    from distgmm.parallel.colocate import spread_persisted

    X, _, _ = blobs(n=4000, d=3, seed=34)
    w = np.random.default_rng(1).uniform(0, 2, size=4000)
    first = sorted(client.nthreads())[0]
    Xd, wd = client.persist([da.from_array(X, chunks=(500, 3)), da.from_array(w, chunks=500)],
                            workers=[first])
    wait([Xd, wd])
    assert Counter(a[0] for a in client.who_has(Xd).values()) == {first: 8}
    Xs, ws = spread_persisted([Xd, ws0 := wd])
    assert Xs.name != Xd.name and ws.name != ws0.name
    whx, whw = client.who_has(Xs), client.who_has(ws)
    holders = [whx[(Xs.name, i, 0)][0] for i in range(8)]
    assert Counter(holders).most_common(1)[0][1] == 4  # 4 and 4
    assert holders[:4] == [first] * 4  # the first share stays put
    assert [whw[(ws.name, i)][0] for i in range(8)] == holders  # weights go along
    np.testing.assert_array_equal(Xs.compute(), X)
    np.testing.assert_array_equal(ws.compute(), w)
    blocks = [(i, 500 * i) for i in range(8)]
    np.testing.assert_allclose(
        dask_map_reduce(Xs, ws, blocks, _weighted_rows, _add, (), 3),
        numpy_map_reduce(X, w, blocks, _weighted_rows, _add, (), 3), rtol=1e-13)
    # balanced already: nothing moves
    assert spread_persisted([Xs])[0] is Xs


def test_dask_blocks_spreads_its_own_copy_not_the_users(client, tmp_path):
    """A huge Parquet row group is read once and cut: persisting the cuts leaves them
    on the reading worker, and distgmm's own persisted copy is spread; an array the
    user persisted stays where it is."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from distributed import wait

    from distgmm.io.sources import ParquetSource
    from distgmm.parallel.blocks import dask_blocks

    X, _, _ = blobs(n=40_000, d=4, seed=35)
    pq.write_table(pa.table({f"f{j}": X[:, j] for j in range(4)}), tmp_path / "one.parquet",
                   row_group_size=len(X))
    ds = ParquetSource(str(tmp_path / "one.parquet"), chunk_bytes=40_000 * 4).load()
    assert ds.X.numblocks[0] == 8
    blocks = dask_blocks(ds.X, None, cache="memory")
    held = Counter(a[0] for a in client.who_has(blocks.X).values())
    assert sorted(held.values()) == [4, 4]
    np.testing.assert_array_equal(blocks.X.compute(), X)

    first = sorted(client.nthreads())[0]
    mine = client.persist(da.from_array(X, chunks=(5_000, 4)), workers=[first])
    wait(mine)
    assert dask_blocks(mine, None, cache="memory").X.name == mine.name


def test_persisted_fit_with_a_client_only_in_dask_config(monkeypatch):
    """dask.config.set(scheduler=client) with no default client: the spread's wait()
    must not ask distributed.default_client() (ValueError: No clients found)."""
    import dask
    import dask.array as da
    import distributed.client as dc
    from distributed import Client, LocalCluster

    import distgmm

    monkeypatch.setattr(dc, "_global_clients", type(dc._global_clients)())
    X = np.random.default_rng(0).normal(size=(4000, 3))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, \
            Client(cluster, set_as_default=False) as client, \
            dask.config.set(scheduler=client):
        gm = distgmm.GaussianMixture(2, cache="memory", random_state=0)
        gm.fit(da.from_array(X, chunks=(500, 3)))
    ref = distgmm.GaussianMixture(2, random_state=0).fit(X)
    assert gm.lower_bound_ == pytest.approx(ref.lower_bound_, rel=1e-12)


def test_a_chunk_over_two_shares_stays_on_its_holder():
    from distgmm.parallel.colocate import spread_targets

    three = {"a": 1, "b": 1, "c": 1}
    assert spread_targets([{"c"}] * 3, [900, 50, 50], three) == ["c", "a", "b"]


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_e_step_leaves_folded_as_rows_give_the_numpy_engines_bits(client, tmp_path,
                                                                  covariance_type):
    """The E-step's small chunks fold as plain rows inside a group task (persisted,
    persisted packed, out of core): the same statistics, bit for bit, as the numpy
    engine's tree of SuffStats merges."""
    import zarr
    from distributed import wait

    from distgmm import GaussianMixture
    from distgmm.numerics.suffstats import HAVE_COMPILED

    if not HAVE_COMPILED:
        pytest.skip("the rows path is the compiled kernel's")
    X, _, _ = blobs(n=6_000, d=3, seed=36)
    w = np.random.default_rng(2).uniform(0.5, 2, size=len(X))
    params = GaussianMixture(3, covariance_type=covariance_type, max_iter=2,
                             random_state=0).fit(X).fitted_params()
    args = (params, "float64")
    chunks = (250, 3)
    z = zarr.create_array(store=str(tmp_path / "x.zarr"), shape=X.shape, chunks=chunks,
                          dtype="f8")
    z[:] = X
    zw = zarr.create_array(store=str(tmp_path / "w.zarr"), shape=w.shape, chunks=(250,),
                           dtype="f8")
    zw[:] = w  # a folded, self-contained read: weights out of core stay in streamed_nodes
    persisted = client.persist(da.from_array(X, chunks=chunks))
    wait(persisted)
    cases = [
        (persisted, None, "memory"),  # a task per worker over the chunks it holds
        (da.from_array(X, chunks=chunks), None, "memory"),  # packed by distgmm
        (da.from_zarr(str(tmp_path / "x.zarr")), None, "none"),  # out of core
        (da.from_zarr(str(tmp_path / "x.zarr")), da.from_zarr(str(tmp_path / "w.zarr")),
         "none"),
        (persisted, client.persist(da.from_array(w, chunks=250)), "memory"),
        (da.from_array(X, chunks=chunks), da.from_array(w, chunks=250), "memory"),
    ]
    client.run(_spy_folder)
    try:
        _check_rows_cases(cases, X, w, args)
    finally:
        client.run(_spy_folder, False)


def _check_rows_cases(cases, X, w, args):
    from distributed import get_client

    from distgmm.numerics.suffstats import chunk_stats, merge
    from distgmm.parallel.blocks import dask_blocks, numpy_blocks

    client = get_client()
    for Xd, wd, cache in cases:
        blocks = dask_blocks(Xd, wd, cache=cache)
        ref = numpy_blocks(X, None if wd is None else w, block_rows=250)
        for split_every in (3, 8):
            blocks.split_every = ref.split_every = split_every
            got = blocks.map_reduce(chunk_stats, merge, *args)
            want = ref.map_reduce(chunk_stats, merge, *args)
            for attr in ("nk", "sx", "s2"):
                np.testing.assert_array_equal(getattr(got, attr), getattr(want, attr))
            assert (got.loglik, got.wsum, got.n_rows) == (want.loglik, want.wsum,
                                                          want.n_rows)
            assert type(got.n_rows) is int and type(got.loglik) is float
        taken = sum(client.run(_folder_log).values(), [])
        assert taken and all(rows for _, rows in taken), (cache, taken)  # rows path ran


def _spy_folder(on=True):
    """Worker side: record whether each group task's _Folder took the rows path."""
    import sys

    from distgmm.parallel import reduction

    folder = reduction._Folder
    real = folder.__dict__.get("_real_init", folder.__init__)
    if not on:
        folder.__init__ = real
        return
    taken = reduction.__dict__.setdefault("_taken", [])

    def init(self, *a, **k):
        real(self, *a, **k)
        taken.append((sys._getframe(1).f_code.co_name, self.finish is not None))

    folder._real_init, folder.__init__ = real, init


def _folder_log():
    from distgmm.parallel import reduction

    out = list(reduction.__dict__.get("_taken", []))
    reduction.__dict__.get("_taken", []).clear()
    return out
