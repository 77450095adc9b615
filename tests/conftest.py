import os

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


class DaskCLICluster:
    """`dask scheduler` + `dask worker` processes on 127.0.0.1, as the deploy recipes run them."""

    def __init__(self, directory, n_workers=2, memory_limit="2GiB", extra_env=None,
                 nthreads=1, cgroup=None):
        import os
        import sys

        self.dir, self.n_workers, self.memory_limit = str(directory), n_workers, memory_limit
        self.nthreads, self.cgroup = nthreads, cgroup  # cgroup: a directory to join
        self.sfile = os.path.join(self.dir, "scheduler.json")
        self.bin = os.path.dirname(sys.executable)
        self.env = {**os.environ, **(extra_env or {})}
        self.scheduler = self.workers = None
        self.address = None

    def start(self):
        import os
        import subprocess
        import time

        from distributed import Client

        if os.path.exists(self.sfile):
            os.remove(self.sfile)
        self.scheduler = subprocess.Popen(
            [os.path.join(self.bin, "dask"), "scheduler", "--host", "127.0.0.1", "--port", "0",
             "--no-dashboard", "--scheduler-file", self.sfile],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=self.env)
        deadline = time.time() + 60
        while not os.path.exists(self.sfile) and time.time() < deadline:
            time.sleep(0.1)
        # the nannies join the cgroup before exec, so the workers they start do too
        wrap = ([] if self.cgroup is None else
                ["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', str(self.cgroup)])
        self.workers = subprocess.Popen(
            [*wrap, os.path.join(self.bin, "dask"), "worker", "--scheduler-file", self.sfile,
             "--nworkers", str(self.n_workers), "--nthreads", str(self.nthreads),
             "--memory-limit", self.memory_limit, "--host", "127.0.0.1", "--no-dashboard"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.dir, env=self.env)
        with Client(scheduler_file=self.sfile, timeout="60s") as c:
            c.wait_for_workers(self.n_workers, timeout=60)
            self.address = c.scheduler.address
        return self

    def worker_pids(self) -> dict:
        import os

        from distributed import Client

        with Client(self.address, timeout="30s") as c:
            return c.run(os.getpid)

    def stop(self):
        import subprocess

        for p in (self.workers, self.scheduler):  # workers first: they say goodbye
            if p is None or p.poll() is not None:
                continue
            p.terminate()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@pytest.fixture(scope="session")
def scheduler_address(tmp_path_factory):
    """A shared cluster started with the `dask scheduler` / `dask worker` commands."""
    cluster = DaskCLICluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield cluster.start().address
    finally:
        cluster.stop()


def cli_command(*args, address=None, extra_env=None):
    """argv and environment for the installed `distgmm` command."""
    import os
    import sys

    env = {k: v for k, v in os.environ.items() if k != "DASK_SCHEDULER_ADDRESS"}
    env.update(extra_env or {})
    if address:
        env["DASK_SCHEDULER_ADDRESS"] = address
    exe = os.path.join(os.path.dirname(sys.executable), "distgmm")
    return [exe, *map(str, args)], env


def run_cli(*args, address=None, cwd=None, timeout=300, extra_env=None):
    """Run the installed `distgmm` command; returns the CompletedProcess."""
    import subprocess

    argv, env = cli_command(*args, address=address, extra_env=extra_env)
    return subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=timeout)


# moto_server fixtures (S3 on 127.0.0.1); botocore never asks the EC2 metadata address
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
from s3_server import s3, s3_server  # noqa: E402,F401


def invoke_main(argv, stdout=False, silent=False) -> tuple:
    """Run ``distgmm`` in this process (fast): its exit code and what it wrote to stderr
    (and, with ``stdout``, what it wrote there too).

    pytest keeps warnings and log records off stderr in this process, so a check of
    stderr alone would not see them: with ``silent``, any warning or log record of
    WARNING and up that the run raises fails the test.
    """
    import contextlib
    import io
    import logging
    import warnings

    from distgmm.cli import main

    err, out, records = io.StringIO(), io.StringIO(), []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    with contextlib.ExitStack() as stack:
        if silent:
            caught = stack.enter_context(warnings.catch_warnings(record=True))
            warnings.simplefilter("always")
            logging.getLogger().addHandler(handler)
            stack.callback(logging.getLogger().removeHandler, handler)
        stack.enter_context(contextlib.redirect_stderr(err))
        stack.enter_context(contextlib.redirect_stdout(out))
        try:
            main([str(a) for a in argv])
            code = 0
        except SystemExit as e:
            code = e.code
    if silent:
        assert [str(w.message) for w in caught] == [], "warnings kept off stderr"
        assert [r.getMessage() for r in records] == [], "log records kept off stderr"
    return (code, err.getvalue(), out.getvalue()) if stdout else (code, err.getvalue())
