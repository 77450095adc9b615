import numpy as np
import pytest


@pytest.fixture(scope="session")
def client():
    """A real distributed cluster: two worker processes on loopback."""
    from distributed import Client, LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=None, memory_limit="2GiB",
    ) as cluster, Client(cluster) as c:
        yield c


def blobs(n=1500, d=3, k=3, seed=0, offset=0.0, spread=1.0):
    """Well-separated Gaussian blobs, shuffled."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=6.0, size=(k, d))
    labels = rng.integers(0, k, size=n)
    scale = rng.uniform(0.5, 1.5, size=(k, d))[labels]
    X = centers[labels] + spread * rng.normal(size=(n, d)) * scale
    return X + offset, labels, centers + offset


def sklearn_start(X, k, covariance_type, seed=0):
    """Initial parameters (weights, means, precisions) taken from data, for both libraries."""
    from sklearn.mixture import GaussianMixture as SK

    rng = np.random.default_rng(seed)
    means = X[rng.choice(len(X), k, replace=False)]
    weights = np.full(k, 1.0 / k)
    ref = SK(k, covariance_type=covariance_type, max_iter=1, weights_init=weights,
             means_init=means, random_state=seed)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref.fit(X)
    return dict(weights_init=weights, means_init=means, precisions_init=ref.precisions_)


@pytest.fixture(scope="session")
def scheduler_address(tmp_path_factory):
    """A cluster started the way deploy recipes start one: `dask scheduler` + `dask worker`."""
    import os
    import subprocess
    import sys
    import time

    from distributed import Client

    d = tmp_path_factory.mktemp("cluster")
    sfile = str(d / "scheduler.json")
    bindir = os.path.dirname(sys.executable)
    procs = [subprocess.Popen(
        [os.path.join(bindir, "dask"), "scheduler", "--host", "127.0.0.1", "--port", "0",
         "--no-dashboard", "--scheduler-file", sfile],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        deadline = time.time() + 60
        while not os.path.exists(sfile) and time.time() < deadline:
            time.sleep(0.1)
        procs.append(subprocess.Popen(
            [os.path.join(bindir, "dask"), "worker", "--scheduler-file", sfile,
             "--nworkers", "2", "--nthreads", "1", "--memory-limit", "2GiB",
             "--host", "127.0.0.1", "--no-dashboard"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=str(d)))
        with Client(scheduler_file=sfile, timeout="60s") as c:
            c.wait_for_workers(2, timeout=60)
            address = c.scheduler.address
        yield address
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


def run_cli(*args, address=None, cwd=None, timeout=300):
    """Run the installed `distgmm` command; returns the CompletedProcess."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "DASK_SCHEDULER_ADDRESS"}
    if address:
        env["DASK_SCHEDULER_ADDRESS"] = address
    exe = os.path.join(os.path.dirname(sys.executable), "distgmm")
    return subprocess.run([exe, *map(str, args)], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=timeout)
