"""Private Dask routes: present in the installed Dask, loud when broken, same bits without."""

from __future__ import annotations

import importlib
import subprocess
import sys
import warnings

import dask
import dask.array as da
import numpy as np
import pytest
from conftest import blobs
from sklearn.exceptions import ConvergenceWarning

from distgmm import GaussianMixture
from distgmm.parallel import _dask
from distgmm.parallel.versions import in_tested_range


@pytest.fixture
def recheck(monkeypatch):
    """Run the import-time check again after the test broke (and then restored) Dask."""
    yield _dask._check_versions
    monkeypatch.undo()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # the real Dask must pass again
        _dask._check_versions()


def fit(X, **kw):
    model = GaussianMixture(n_components=3, covariance_type="full", tol=0, max_iter=4,
                            random_state=0, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X)


def assert_same_fit(a, b):
    np.testing.assert_array_equal(a.means_, b.means_)
    np.testing.assert_array_equal(a.covariances_, b.covariances_)
    np.testing.assert_array_equal(a.lower_bounds_, b.lower_bounds_)


def fits_with_and_without_private(X, **kw):
    with _dask.private_routes(True):
        on = fit(X, **kw)
    with _dask.private_routes(False):
        off = fit(X, **kw)
    return on, off


@pytest.fixture(scope="module")
def data():
    return blobs(n=2400, d=3, k=3, seed=21)[0]


def test_every_private_symbol_still_exists():
    """An upgrade that moves a private API fails here, not silently in production."""
    for route in _dask.ROUTES.values():
        for module, attribute in route.apis:
            assert hasattr(importlib.import_module(module), attribute), f"{module}.{attribute}"
    assert _dask._usable == {"fold": True, "defer": True, "graph": True, "batch": True}
    assert in_tested_range(dask.__version__, *_dask.TESTED_DASK)


def test_routes_are_on_by_default_and_switch_off(monkeypatch):
    assert _dask.enabled("fold") and _dask.enabled("graph")
    with _dask.private_routes(False):
        assert not _dask.enabled("fold") and not _dask.enabled("graph")
        assert _dask.fold_inputs({"x": 1}, ["x"]) == {}
    monkeypatch.setenv(_dask.ENV_SWITCH, "0")
    assert not _dask.enabled("graph")
    with _dask.private_routes(True):
        assert _dask.enabled("graph")


def test_the_env_switch_reaches_a_fresh_process(data):
    code = ("from distgmm.parallel import _dask; "
            "print(_dask.enabled('fold'), _dask.enabled('graph'))")
    out = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-c", code],
                         env={**__import__("os").environ, _dask.ENV_SWITCH: "0"},
                         capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_threads_scheduler_same_bits_without_private_routes(data):
    Xd = da.from_array(data, chunks=(300, 3))
    with dask.config.set(scheduler="threads"):
        on, off = fits_with_and_without_private(Xd, cache="none")
    assert_same_fit(on, off)


def test_out_of_core_zarr_same_bits_without_folding(data, tmp_path, client):
    import zarr

    z = zarr.create_array(store=str(tmp_path / "x.zarr"), shape=data.shape,
                          chunks=(400, 3), dtype="f8")
    z[:] = data
    Xd = da.from_zarr(str(tmp_path / "x.zarr"))
    on, off = fits_with_and_without_private(Xd, cache="none")
    assert_same_fit(on, off)
    with dask.config.set(scheduler="threads"):
        assert_same_fit(on, fit(Xd, cache="none"))


@pytest.mark.parametrize("processes", [False, True])
def test_cluster_same_bits_without_private_routes(data, processes):
    from distributed import Client, LocalCluster

    Xd = da.from_array(data, chunks=(300, 3))
    where = {"host": "127.0.0.1"} if processes else {}  # in-process: inproc:// addresses
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=processes,
                      dashboard_address=None, **where) as cluster, Client(cluster):
        memory = fits_with_and_without_private(Xd, cache="memory")  # grouped passes
        lazy = fits_with_and_without_private(Xd, cache="none")  # graph passes
    assert_same_fit(*memory)
    assert_same_fit(*lazy)
    assert_same_fit(memory[0], lazy[0])


def test_dask_outside_the_tested_range_warns_once_and_falls_back(data, monkeypatch, recheck):
    monkeypatch.setattr(dask, "__version__", "2099.1.0")
    with pytest.warns(RuntimeWarning) as caught:
        recheck()
    messages = [str(w.message) for w in caught]
    assert len(messages) == len(_dask.ROUTES)  # one per route, each naming its API
    assert all("2099.1.0" in m and "Consequence" in m for m in messages)
    assert any("dask._task_spec.Task" in m for m in messages)
    assert not _dask.enabled("fold") and not _dask.enabled("graph")
    Xd = da.from_array(data, chunks=(300, 3))
    with warnings.catch_warnings(), dask.config.set(scheduler="threads"):
        warnings.simplefilter("error", RuntimeWarning)  # no warning per pass
        fallback = fit(Xd, cache="none")
    monkeypatch.undo()
    recheck()
    with dask.config.set(scheduler="threads"):
        assert_same_fit(fallback, fit(Xd, cache="none"))


def test_a_missing_private_api_disables_only_its_route(data, monkeypatch, recheck):
    import dask.optimization

    monkeypatch.delattr(dask.optimization, "cull")  # `from dask.optimization import` fails
    with pytest.warns(RuntimeWarning, match=r"'graph'.*ImportError.*Consequence: passes"):
        usable = recheck()
    assert usable == {"fold": True, "defer": True, "graph": False, "batch": True}
    Xd = da.from_array(data, chunks=(300, 3))
    with dask.config.set(scheduler="threads"):
        public = fit(Xd, cache="none")
        monkeypatch.undo()
        recheck()
        assert_same_fit(public, fit(Xd, cache="none"))


def test_out_of_core_chunks_stream_through_one_task_per_group(data, tmp_path, monkeypatch):
    """More chunks than groups: a few group tasks read them, and the bits do not move."""
    import zarr

    from distgmm.parallel import reduction

    z = zarr.create_array(store=str(tmp_path / "x.zarr"), shape=data.shape,
                          chunks=(100, 3), dtype="f8")
    z[:] = data
    Xd = da.from_zarr(str(tmp_path / "x.zarr"))
    calls = []
    real = reduction.streamed_nodes

    def counted(*args):
        calls.append(len(args[4]))  # chunk positions of this group
        return real(*args)

    monkeypatch.setattr(reduction, "streamed_nodes", counted)
    with dask.config.set(scheduler="threads"):
        streamed = fit(Xd, cache="none")
        n_groups = reduction.TASKS_PER_THREAD * reduction.worker_threads()
        passes = len(calls) // n_groups
        assert len(calls) == passes * n_groups and passes >= 2
        assert sum(calls[:n_groups]) == Xd.numblocks[0]
        calls.clear()
        with _dask.private_routes(False):
            public = fit(Xd, cache="none")
    assert not calls
    assert_same_fit(streamed, public)


def test_small_out_of_core_chunks_are_read_in_runs_with_the_same_bits(data, tmp_path,
                                                                     monkeypatch):
    """500-row-like chunks: consecutive chunks of a group are read by one call over
    their rows, the kernel still sees each chunk alone, so the fit keeps its bits."""
    import zarr

    from distgmm.parallel import reduction

    z = zarr.create_array(store=str(tmp_path / "x.zarr"), shape=data.shape,
                          chunks=(50, 3), dtype="f8")
    z[:] = data
    w = np.random.default_rng(3).uniform(0.5, 2.0, len(data))
    zw = zarr.create_array(store=str(tmp_path / "w.zarr"), shape=w.shape, chunks=(50,),
                           dtype="f8")
    zw[:] = w
    Xd, wd = da.from_zarr(str(tmp_path / "x.zarr")), da.from_zarr(str(tmp_path / "w.zarr"))
    reads = []
    real = _dask.coalesce_reads

    def counted(loaders, max_bytes, force=False):
        out = real(loaders, max_bytes, force)
        reads.append((len(loaders), len(out)))
        return out

    def weighted_fit(**kw):
        model = GaussianMixture(n_components=3, tol=0, max_iter=4, random_state=0,
                                init_params="random_from_data", cache="none", **kw)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return model.fit(Xd, sample_weight=wd)

    monkeypatch.setattr(_dask, "coalesce_reads", counted)
    with dask.config.set(scheduler="threads"):
        batched = weighted_fit()
        assert reads and all(n_reads == 1 < n for n, n_reads in reads), reads
        monkeypatch.setattr(reduction, "READ_BATCH_BYTES", 3 * 50 * 3 * 8)  # 3 chunks a read
        reads.clear()
        capped = weighted_fit()
        assert all(n_reads == -(-n // 3) for n, n_reads in reads), reads
        with _dask.private_routes(False):
            public = weighted_fit()
    assert_same_fit(batched, public)
    assert_same_fit(capped, public)


def test_coalesce_reads_keeps_apart_what_is_not_one_array():
    a = _dask._ArrayLike(np.arange(40.0).reshape(20, 2))
    b = _dask._ArrayLike(np.arange(40.0).reshape(20, 2))
    tasks = []
    for arr, chunks in ((a, (5, 2)), (b, (5, 2))):
        X = da.from_array(arr, chunks=chunks, inline_array=False)
        keys = [(X.name, i, 0) for i in range(4)]
        folded = _dask.fold_inputs(dict(X.__dask_graph__()), keys)
        tasks += [folded[k] for k in keys]
    # a, a, a, a, b, b, b, b with something that is not a read in the middle of b's
    loaders = [(t, None) for t in tasks]
    loaders.insert(6, ("not a task", None))
    reads = _dask.coalesce_reads(loaders, 1 << 20)
    assert [r[2] for r in reads] == [(5, 5, 5, 5), (5, 5), None, (5, 5)]
    np.testing.assert_array_equal(_dask.run_deferred(reads[0][0]), a.data)
    np.testing.assert_array_equal(_dask.run_deferred(reads[3][0]), b.data[10:])
    with _dask.private_routes(False):
        assert [r[2] for r in _dask.coalesce_reads(loaders, 1 << 20)] == [None] * 9


def test_a_changed_defer_behaviour_disables_only_its_route(data, monkeypatch, recheck):
    monkeypatch.setattr(_dask, "run_deferred", lambda task: "not run")
    with pytest.warns(RuntimeWarning, match=r"'defer'.*no longer passed as data"):
        assert recheck() == {"fold": True, "defer": False, "graph": True, "batch": True}


def test_a_failing_task_spec_import_disables_both_routes(monkeypatch, recheck):
    # dask's own cull/Delayed path needs dask._task_spec too: both routes are off
    monkeypatch.setitem(sys.modules, "dask._task_spec", None)
    with pytest.warns(RuntimeWarning, match=r"'fold'.*ModuleNotFoundError"):
        assert recheck()["fold"] is False
    assert _dask.fold_inputs({"x": 1}, ["x"]) == {}


def test_a_changed_private_behaviour_is_caught(monkeypatch, recheck):
    from dask._task_spec import Task

    monkeypatch.setattr(Task, "substitute", lambda self, subs, key=None: self)
    with pytest.warns(RuntimeWarning, match="Task.substitute no longer nests"):
        assert recheck()["fold"] is False


def in_dask_range(version):
    return in_tested_range(version, *_dask.TESTED_DASK)


def test_the_version_parse_without_packaging(monkeypatch):
    monkeypatch.setitem(sys.modules, "packaging.version", None)
    assert not in_dask_range("2026.10.1+g12ab")
    assert in_dask_range("2026.8.0") and not in_dask_range("2024.8.0")


def test_the_upper_bound_s_pre_releases_and_short_spellings_are_untested():
    assert not in_tested_range("0.3", "0.2.0", "0.3.0")
    assert not in_tested_range("3.2.0rc1", "3.1.0", "3.2.0")
    assert in_tested_range("0.2.3", "0.2.0", "0.3.0")


def test_a_version_packaging_cannot_read_still_compares():
    # one unparseable string must not leave Version and int tuples to compare
    assert in_dask_range("2026.8.0.dev-custom!build")
    assert not in_dask_range("2099.1.0 (vendored)")


def test_the_drain_reads_documented_worker_attributes(client):
    from distgmm.jobs.compute import _pending, _running

    assert all(keys == [] for keys in client.run(_running).values())
    assert _pending(client) == set()


def _fail_fast(x):
    raise ValueError("chunk 0 is bad")


def _slow_write(path):
    import time

    time.sleep(1.5)
    with open(path, "w") as f:
        f.write("late")
    return 1


def test_the_drain_waits_for_a_cancelled_task_still_running(tmp_path):
    """A cancelled running task is in state ``cancelled``: the drain must still wait."""
    import io

    from distributed import Client, LocalCluster

    from distgmm.jobs.compute import compute
    from distgmm.jobs.events import Reporter

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        late = tmp_path / "late"
        slow = dask.delayed(_slow_write)(str(late))
        bad = dask.delayed(_fail_fast)(slow.key)  # independent of slow: both start
        with pytest.raises(ValueError, match="chunk 0 is bad"):
            compute(client, [slow, bad], Reporter(quiet=True, stream=io.StringIO()), "t")
        assert late.exists()  # the error went on only after the straggler finished
