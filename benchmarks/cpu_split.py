"""Where the cores go during EM iterations: CPU seconds per process, per iteration.

Fits one case of compare.py on ``LocalCluster(n_workers=2, threads_per_worker=1)`` (the
scheduler, the nannies and the client live in this process) with the data persisted,
and reports per EM iteration the wall time, this process's CPU time and each worker's,
by differencing a ``--n2``-iteration fit and a ``--n1``-iteration one, so set-up and
initialisation cancel out. On a machine with as many cores as workers, every
millisecond of driver CPU is taken from a worker; this is how the OpenBLAS spin after
each M-step was found (117 ms of driver CPU per case-A iteration, 20-30 ms without it).

Usage::

    python benchmarks/cpu_split.py --case A --covariance-type full
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np
from compare import CASES, TYPES, make_data, start


def measure(case: str, covariance_type: str, n1: int, n2: int, chunks: int) -> dict:
    """Per-iteration wall and CPU milliseconds: ``{"wall", "driver", "workers"}``."""
    import dask.array as da
    import psutil
    from distributed import Client, LocalCluster, wait

    from distgmm import GaussianMixture

    n, d, k = CASES[case]
    X, means = make_data(n, d, k)
    init, _ = start(X, means, covariance_type)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        Xd = client.persist(da.from_array(X, chunks=(-(-n // chunks), d)))
        wait(Xd)
        me = psutil.Process()
        workers = [psutil.Process(pid) for pid in client.run(os.getpid).values()]

        def cpu(p):
            t = p.cpu_times()
            return t.user + t.system

        def fit(n_iter):
            c0 = [cpu(p) for p in [me, *workers]]
            t0 = time.perf_counter()
            with client.as_current(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                GaussianMixture(k, covariance_type=covariance_type, tol=0, max_iter=n_iter,
                                **init).fit(Xd)
            wall = time.perf_counter() - t0
            return np.array([wall] + [cpu(p) - c for p, c in zip([me, *workers], c0)])

        fit(n1)  # warm up
        short = min((fit(n1) for _ in range(2)), key=lambda r: r[0])
        long = min((fit(n2) for _ in range(2)), key=lambda r: r[0])
    per = 1e3 * (long - short) / (n2 - n1)
    return {"wall": per[0], "driver": per[1], "workers": list(per[2:])}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--case", choices=sorted(CASES), default="smoke")
    p.add_argument("--covariance-type", choices=TYPES, default="full")
    p.add_argument("--n1", type=int, default=2)
    p.add_argument("--n2", type=int, default=12)
    p.add_argument("--chunks", type=int, default=8)
    args = p.parse_args(argv)
    r = measure(args.case, args.covariance_type, args.n1, args.n2, args.chunks)
    workers = ", ".join(f"{w:.0f}" for w in r["workers"])
    print(f"{args.case} {args.covariance_type}: per iteration {r['wall']:.0f} ms wall; CPU ms: "
          f"driver (client, scheduler, nannies) {r['driver']:.0f}, workers {workers}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
