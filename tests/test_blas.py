"""One BLAS thread while distgmm computes (distgmm/parallel/blas.py)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from threadpoolctl import ThreadpoolController

from distgmm.parallel.blas import one_blas_thread
from distgmm.parallel.reduction import dask_map_reduce, numpy_map_reduce

_controller = ThreadpoolController()


def blas_threads() -> list[int]:
    return [lib.num_threads for lib in _controller.select(user_api="blas").lib_controllers]


@pytest.fixture
def two_blas_threads():
    """Start each test from two BLAS threads, whatever the environment set."""
    with _controller.limit(limits=2, user_api="blas"):
        assert blas_threads() and set(blas_threads()) == {2}
        yield


def test_limit_inside_and_restored_after(two_blas_threads):
    with one_blas_thread():
        assert set(blas_threads()) == {1}
        with one_blas_thread():  # nested
            assert set(blas_threads()) == {1}
        assert set(blas_threads()) == {1}
    assert set(blas_threads()) == {2}


class FakeController:
    """Stands in for threadpoolctl: counts limits and restores.

    Which thread may change OpenBLAS's setting depends on its version (0.3.31 ignores
    a change from another thread once the main thread has set one), so the
    reference counting is tested against this fake, and the real effect from the
    main thread.
    """

    def __init__(self):
        self.limits = self.restores = 0

    def limit(self, limits, user_api):
        assert (limits, user_api) == (1, "blas")
        self.limits += 1
        fake = self

        class Limiter:
            def restore_original_limits(self):
                fake.restores += 1

        return Limiter()


@pytest.fixture
def fake_controller(monkeypatch):
    from distgmm.parallel import blas

    fake = FakeController()
    monkeypatch.setattr(blas, "_controller", fake)
    return fake


def test_overlapping_threads_restore_only_when_the_last_leaves(fake_controller):
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def first():
        with one_blas_thread():
            a_in.set()
            b_in.wait(5)
        a_out.set()

    def second():
        a_in.wait(5)
        with one_blas_thread():
            b_in.set()
            a_out.wait(5)
            seen["after first left"] = (fake_controller.limits, fake_controller.restores)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert seen["after first left"] == (1, 0)
    assert (fake_controller.limits, fake_controller.restores) == (1, 1)


def test_decorator_restores_after_an_error(two_blas_threads):
    @one_blas_thread()
    def fails():
        assert set(blas_threads()) == {1}
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        fails()
    assert set(blas_threads()) == {2}


def _record(X, w, row_start):
    time.sleep(0.02 * (X.shape[0] == 10))  # the first block finishes last
    return [(row_start, tuple(blas_threads()))]


def _concat(a, b):
    return a + b


def test_numpy_engine_runs_blocks_with_one_blas_thread_in_block_order(two_blas_threads):
    X = np.zeros((40, 2))
    blocks = [(0, 0), (1, 10), (2, 22), (3, 31)]
    out = numpy_map_reduce(X, None, blocks, _record, _concat, (), split_every=2)
    assert [r for r, _ in out] == [0, 10, 22, 31]
    assert all(set(t) == {1} for _, t in out)
    assert set(blas_threads()) == {2}


def _inside(X, w, row_start):
    from distgmm.parallel import blas

    return [(row_start, blas._active)]


def test_dask_chunk_tasks_run_inside_the_limit(fake_controller):
    dask = pytest.importorskip("dask")
    import dask.array as da

    X = da.zeros((40, 2), chunks=(10, 2))
    blocks = [(i, 10 * i) for i in range(4)]
    with dask.config.set(scheduler="threads"):
        out = dask_map_reduce(X, None, blocks, _inside, _concat, ())
    assert [r for r, _ in out] == [0, 10, 20, 30]
    assert all(active >= 1 for _, active in out)
    assert fake_controller.limits >= 1
    assert fake_controller.limits == fake_controller.restores


def test_fit_runs_its_m_steps_with_one_blas_thread(two_blas_threads, monkeypatch):
    import distgmm.parallel.em as em
    from distgmm import GaussianMixture

    seen = []
    m_step = em.m_step

    def spy(stats, reg_covar):
        seen.append(set(blas_threads()))
        return m_step(stats, reg_covar)

    monkeypatch.setattr(em, "m_step", spy)
    X = np.random.default_rng(0).normal(size=(300, 3))
    GaussianMixture(2, max_iter=3, random_state=0).fit(X)
    assert seen and all(s == {1} for s in seen)
    assert set(blas_threads()) == {2}


def _sum_rows(X, w, row_start):
    time.sleep(0.05)  # blocks overlap: the pool starts both of its threads
    return X.sum(axis=0)


def _add(a, b):
    return a + b


def test_numpy_engine_works_in_a_forked_child():
    """The parent's idle pool threads do not exist in a forked child; reusing the
    parent's pool there queued the blocks for them and waited forever."""
    import multiprocessing

    X = np.arange(80.0).reshape(40, 2)
    blocks = [(0, 0), (1, 20)]
    expected = numpy_map_reduce(X, None, blocks, _sum_rows, _add, ())  # parent's pool
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:
        got = pool.apply_async(numpy_map_reduce, (X, None, blocks, _sum_rows, _add, ()))
        np.testing.assert_array_equal(got.get(timeout=20), expected)
