"""Seconds per EM iteration of two distgmm source trees, alternated in one run.

For refactorings that must not change speed: each round runs every tree once, in a
fresh process with that tree first on ``PYTHONPATH`` (its kernel built in place:
``python setup.py build_ext --inplace``), on ``LocalCluster(n_workers=2,
threads_per_worker=1)`` with case A's data (1e6 x 16, K=8) persisted in 8 chunks, from
the same initial parameters, tol=0. After one warm-up fit, seconds per iteration are
``(fit(22) - fit(2)) / 20``, three times per process; the table gives each tree's
minimum and median over all rounds and the ratio of the second tree to the first.

Usage::

    python benchmarks/ab_iteration.py /path/to/old/tree . --type full --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import warnings

D, K = 16, 8
ITERS = (2, 22)


def worker(covariance_type: str, n: int = 1_000_000) -> dict:
    """Per-iteration seconds of three fits in this process's distgmm, and which
    distgmm and kernel ran them."""
    import dask.array as da
    import numpy as np
    from distributed import Client, LocalCluster
    from sklearn.exceptions import ConvergenceWarning

    import distgmm
    from distgmm import GaussianMixture
    from distgmm.numerics import suffstats

    which = {"file": distgmm.__file__, "compiled": bool(suffstats.HAVE_COMPILED)}
    if not os.path.realpath(distgmm.__file__).startswith(os.getcwd() + os.sep) or not (
            which["compiled"]):
        return {**which, "seconds": []}  # refused by main(): measure nothing
    warnings.simplefilter("ignore", ConvergenceWarning)
    rng = np.random.default_rng(0)
    centers = rng.normal(scale=4.0, size=(K, D))
    X = centers[rng.integers(0, K, n)] + rng.normal(size=(n, D))
    start = GaussianMixture(K, covariance_type=covariance_type, max_iter=1,
                            random_state=0).fit(X[:50_000])
    kw = dict(covariance_type=covariance_type, tol=0, weights_init=start.weights_,
              means_init=start.means_, precisions_init=start.precisions_, cache="memory")
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        Xd = client.persist(da.from_array(X, chunks=(n // 8, D)))
        GaussianMixture(K, max_iter=ITERS[1], **kw).fit(Xd)  # warm-up: imports, placement
        out = []
        for _ in range(3):
            t = {}
            for m in ITERS:
                t0 = time.perf_counter()
                GaussianMixture(K, max_iter=m, **kw).fit(Xd)
                t[m] = time.perf_counter() - t0
            out.append((t[ITERS[1]] - t[ITERS[0]]) / (ITERS[1] - ITERS[0]))
    return {**which, "seconds": out}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("trees", nargs=2, help="two distgmm source trees (kernel built in place)")
    p.add_argument("--type", default="full", help="covariance type")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--rows", type=int, default=1_000_000, help="rows (case A: 1e6)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args.type, args.rows)))
        return
    times: list[list[float]] = [[], []]
    for _ in range(args.rounds):
        for i, tree in enumerate(args.trees):
            env = {**os.environ, "PYTHONPATH": os.path.abspath(tree)}
            cmd = [sys.executable, __file__, *args.trees, "--type", args.type,
                   "--rows", str(args.rows), "--worker"]
            run = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True,
                                 cwd=os.path.abspath(tree))
            got = json.loads(run.stdout.strip().splitlines()[-1])
            # a tree without an importable distgmm/ would silently measure the installed
            # one, and an unbuilt kernel the numpy one: refuse both
            if not os.path.realpath(got["file"]).startswith(os.path.realpath(tree) + os.sep):
                raise SystemExit(f"{tree}: the run imported {got['file']}, not this tree")
            if not got["compiled"]:
                raise SystemExit(f"{tree}: its kernel is not built: run python setup.py "
                                 "build_ext --inplace there")
            times[i] += got["seconds"]
    first = statistics.median(times[0])
    print("| tree | type | min s/it | median s/it | median / first |\n|---|---|---|---|---|")
    for tree, ts in zip(args.trees, times):
        print(f"| {tree} | {args.type} | {min(ts):.4f} | {statistics.median(ts):.4f} | "
              f"{statistics.median(ts) / first:.3f} |")


if __name__ == "__main__":
    main()
