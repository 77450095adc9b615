"""Candidates sharing passes: the same results as separate runs, far fewer passes."""

import warnings
from functools import partial

import dask
import dask.array as da
import numpy as np
import pytest
from conftest import blobs
from sklearn.exceptions import ConvergenceWarning

from distgmm import GaussianMixture, estimator
from distgmm.parallel.blocks import Blocks, numpy_blocks
from distgmm.parallel.em import run_em
from distgmm.parallel.init import initial_params
from distgmm.parallel.lockstep import run_lockstep


class CountingBlocks(Blocks):
    passes = 0

    def map_reduce(self, fn, combine, *args):
        type(self).passes += 1
        return super().map_reduce(fn, combine, *args)


def candidate(k, ct, seed, init="kmeans"):
    def task(blocks):
        params = initial_params(blocks, k, ct, 1e-6, init, seed)
        return run_em(blocks, params, tol=1e-5, max_iter=60, reg_covar=1e-6)
    return task


def test_lockstep_equals_separate_runs_with_fewer_passes():
    X = blobs(n=2400, d=3, k=4, seed=12, spread=2.0)[0]
    b = numpy_blocks(X, block_rows=300)
    blocks = CountingBlocks(b.X, b.sample_weight, b.blocks, b.is_dask)
    tasks = [candidate(k, ct, s, init) for k, ct, s, init in [
        (2, "full", 1, "kmeans"), (3, "diag", 2, "kmeans"), (4, "tied", 3, "k-means++"),
        (5, "spherical", 4, "random"), (4, "full", 5, "random_from_data")]]
    separate = []
    for t in tasks:
        CountingBlocks.passes = 0
        separate.append((t(blocks), CountingBlocks.passes))
    CountingBlocks.passes = 0
    outcomes, passes = run_lockstep(blocks, tasks)
    assert passes == CountingBlocks.passes == max(p for _, p in separate)
    assert passes < sum(p for _, p in separate)
    for (ref, _), got in zip(separate, outcomes):
        assert got.error is None
        res = got.value
        np.testing.assert_array_equal(res.params.means, ref.params.means)
        np.testing.assert_array_equal(res.params.full_covariances(),
                                      ref.params.full_covariances())
        assert res.lower_bounds == ref.lower_bounds and res.n_iter == ref.n_iter


def test_a_failing_candidate_is_recorded_or_raised():
    X = blobs(n=600, d=2, k=2, seed=1)[0]
    blocks = numpy_blocks(X, block_rows=200)

    def broken(b):
        b.map_reduce(lambda *a: 0, lambda x, y: x + y)
        raise RuntimeError("candidate 1 broke")

    tasks = [candidate(2, "full", 0), broken, candidate(3, "diag", 1)]
    outcomes, _ = run_lockstep(blocks, tasks, fail_fast=False)
    assert outcomes[0].value.n_iter > 1 and outcomes[2].value.n_iter > 1
    assert "broke" in str(outcomes[1].error)
    with pytest.raises(RuntimeError, match="candidate 1 broke"):
        run_lockstep(blocks, tasks)


def test_restarts_share_passes_on_dask(monkeypatch):
    X = blobs(n=1200, d=3, k=3, seed=4)[0]
    Xd = da.from_array(X, chunks=300)
    calls = []

    def counting(dsk, keys, **kwargs):
        calls.append(1)
        return dask.get(dsk, keys, **kwargs)

    kw = dict(n_components=3, tol=0, max_iter=6, init_params="random_from_data",
              random_state=3, cache="none")
    with dask.config.set(scheduler=counting), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        one = GaussianMixture(n_init=1, **kw).fit(Xd)
        n_one = len(calls)
        calls.clear()
        four = GaussianMixture(n_init=4, **kw).fit(Xd)
    assert len(calls) == n_one  # four restarts, the passes of one
    assert four.lower_bound_ >= one.lower_bound_
    # The same restarts in process on numpy, over the same 300-row blocks, give the
    # same bits and so pick the same best. With the numpy engine's default blocks (one
    # block of 1200 rows) the sums round differently: restarts 0, 1 and 3 reach the same
    # mixture (components permuted) with lower bounds a few ulps apart, and which of
    # them wins depends on those ulps.
    monkeypatch.setattr(estimator, "numpy_blocks", partial(numpy_blocks, block_rows=300))
    same_blocks = GaussianMixture(n_init=4, **kw).fit(X)
    np.testing.assert_array_equal(same_blocks.means_, four.means_)
    np.testing.assert_array_equal(same_blocks.covariances_, four.covariances_)
    assert same_blocks.lower_bounds_ == four.lower_bounds_


def test_a_chunk_error_fails_only_its_candidate():
    X = blobs(n=600, d=2, k=2, seed=1)[0]
    blocks = numpy_blocks(X, block_rows=200)

    def boom(X, w, row_start):
        raise MemoryError("this candidate is too big")

    def big(b):
        return b.map_reduce(boom, lambda x, y: x)

    outcomes, _ = run_lockstep(blocks, [candidate(2, "full", 0), big, candidate(3, "diag", 1)],
                               fail_fast=False)
    assert outcomes[0].value.n_iter > 1 and outcomes[2].value.n_iter > 1
    assert isinstance(outcomes[1].error, MemoryError)


def test_ctrl_c_while_candidates_compute_stops_promptly(tmp_path):
    import subprocess
    import sys
    import time

    script = tmp_path / "run.py"
    script.write_text(
        # Ctrl-C's default handler, even where the test runner was started with SIGINT
        # ignored (a background job of a non-interactive shell)
        "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "import time, numpy as np\n"
        "from distgmm.parallel.blocks import numpy_blocks\n"
        "from distgmm.parallel.lockstep import run_lockstep\n"
        "b = numpy_blocks(np.ones((100, 2)), block_rows=50)\n"
        "def slow(blocks):\n"
        "    for _ in range(100):\n"
        "        blocks.map_reduce(lambda X, w, r: 1, lambda x, y: x + y)\n"
        "        time.sleep(0.2)\n"
        "print('ready', flush=True)\n"
        "run_lockstep(b, [slow, slow])\n")
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.5)
    proc.send_signal(__import__("signal").SIGINT)
    try:
        _, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("run_lockstep hung after Ctrl-C") from None
    assert proc.returncode != 0 and "KeyboardInterrupt" in err
