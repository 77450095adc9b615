"""Failures on a real cluster (`dask scheduler` + `dask worker` processes).

Every scenario must end with the same model as a run without faults: a killed worker's
tasks are recomputed (same bits: fixed reduction order); a killed driver or scheduler
is survived by rerunning, which resumes from the checkpoint.
"""

import json
import os
import signal
import subprocess
import time

import numpy as np
import pytest
import zarr
from conftest import DaskCLICluster, blobs, cli_command, run_cli

from distgmm import load_model

FAST_FAIL = {"DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "5s"}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    X = blobs(n=160_000, d=8, k=5, seed=11, spread=3.0)[0]
    path = tmp_path_factory.mktemp("faults") / "x.zarr"
    zarr.create_array(store=str(path), shape=X.shape, chunks=(20_000, 8),
                      dtype="f8")[:] = X
    return str(path)


def fit_args(data, out):
    return ["fit", data, "-k", 5, "--output", out, "--tol", 0, "--max-iter", 10,
            "--cache", "none", "--init", "random_from_data", "--log-format", "json"]


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory, scheduler_address):
    out = tmp_path_factory.mktemp("ref") / "out"
    r = run_cli(*fit_args(data, out), address=scheduler_address)
    assert r.returncode == 0, r.stderr
    return load_model(str(out))


def same_model(a, b):
    for attr in ("weights_", "means_", "covariances_"):
        np.testing.assert_allclose(getattr(a, attr), getattr(b, attr), rtol=1e-12, atol=0)
    np.testing.assert_allclose(a.lower_bounds_, b.lower_bounds_, rtol=1e-12)
    assert a.n_iter_ == b.n_iter_ == 10


def start_fit(data, out, address):
    argv, env = cli_command(*fit_args(data, out), address=address, extra_env=FAST_FAIL)
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)


def wait_for_iteration(out, n, proc, timeout=120):
    """Block until the checkpoint next to ``out`` records iteration ``n``."""
    ckpt = out.parent / f".{out.name}.checkpoint.json"
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            if json.loads(ckpt.read_text())["state"]["restarts"][0]["n_iter"] >= n:
                return
        except (FileNotFoundError, ValueError, TypeError):
            pass
        time.sleep(0.02)
    raise AssertionError(f"no checkpoint at iteration {n}")


def _cluster(directory):
    c = DaskCLICluster(directory)
    os.makedirs(c.dir)
    try:
        yield c.start()
    finally:
        c.stop()


@pytest.fixture
def cluster(tmp_path):
    """A cluster of the test's own (the scheduler test kills and restarts it)."""
    yield from _cluster(tmp_path / "cluster-dir")


@pytest.fixture(scope="module")
def survivor(tmp_path_factory):
    """A cluster shared by the killed-worker and killed-driver tests: neither leaves it
    broken (the nanny restarts a killed worker), so one start and warm-up serve both."""
    yield from _cluster(tmp_path_factory.mktemp("survivor") / "cluster-dir")


def test_killed_worker_is_recomputed(data, reference, survivor, tmp_path):
    cluster = survivor
    out = tmp_path / "out"
    proc = start_fit(data, out, cluster.address)
    wait_for_iteration(out, 3, proc)
    victim = next(iter(cluster.worker_pids().values()))
    os.kill(victim, signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 0, stderr
    assert not any('"resume"' in line for line in stderr.splitlines())
    same_model(load_model(str(out)), reference)


def test_killed_driver_resumes_from_checkpoint(data, reference, survivor, tmp_path):
    cluster = survivor
    out = tmp_path / "out"
    proc = start_fit(data, out, cluster.address)
    wait_for_iteration(out, 4, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    r = run_cli(*fit_args(data, out), address=cluster.address)
    assert r.returncode == 0, r.stderr
    resumed = [json.loads(line) for line in r.stderr.splitlines() if '"resume"' in line]
    assert resumed and resumed[0]["n_iter"] >= 4
    iterations = [json.loads(line)["n_iter"] for line in r.stderr.splitlines()
                  if '"iteration"' in line]
    assert iterations == list(range(resumed[0]["n_iter"] + 1, 11))
    same_model(load_model(str(out)), reference)


def test_killed_scheduler_exits_75_then_resumes(data, reference, cluster, tmp_path):
    out = tmp_path / "out"
    proc = start_fit(data, out, cluster.address)
    wait_for_iteration(out, 3, proc)
    cluster.scheduler.send_signal(signal.SIGKILL)
    t0 = time.time()
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 75, stderr
    print(f"distgmm exited {time.time() - t0:.1f} s after the scheduler was killed")
    assert time.time() - t0 < 60
    assert stderr.strip().splitlines()[-1].startswith("distgmm: error: ")
    assert not out.exists()
    cluster.stop()
    cluster.start()
    r = run_cli(*fit_args(data, out), address=cluster.address)
    assert r.returncode == 0, r.stderr
    assert '"resume"' in r.stderr
    same_model(load_model(str(out)), reference)
