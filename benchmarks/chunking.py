"""Seconds per EM iteration for one data set under different user chunkings.

The same rows (case A by default: 1e6 x 16, K=8, full) as a dask array with row chunks
of 125,000 / 10,000 / 2,000 / 500 rows, persisted on a ``LocalCluster(2 x 1)`` and out
of core (the user's own ``da.from_zarr`` of a Zarr array written with those chunks,
``cache="none"``). Per iteration = the median of the fits' own per-iteration times
(``timings_``), iterations ``--n1`` + 1 to ``--n2`` of each fit, same start, tol=0. Also prints each
chunking's ratio to the best chunking of its column, and, out of core, the ratio to
max(persisted iteration, raw read of the array) (issue 17's targets).

Seconds to a model: the wall time of a whole fit (``--model-iters`` iterations, tol=0,
the default start) on the user's ``da.from_zarr``, with ``cache="memory"`` (the copy
distgmm persists is part of it) and ``cache="none"``; median of two fits.

Usage::

    python benchmarks/chunking.py --out benchmarks/results/issue17-chunking
    python benchmarks/chunking.py --n 200000 --rows 20000 --rows 500   # quicker
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def make_data(n, d, k, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=4.0, size=(k, d))
    return centers[rng.integers(0, k, n)] + rng.normal(size=(n, d)), centers


def per_iteration(X, means, n1, n2, timed_iters=12, **kw):
    """Median seconds per EM iteration (each iteration is one pass, timed by the fit
    itself: ``timings_["iterations"]``), the first ``n1`` iterations of each fit left
    out, over fits of ``n2`` iterations until ``timed_iters`` iterations are timed."""
    import distgmm

    def fit(iters):
        gm = distgmm.GaussianMixture(len(means), means_init=means, max_iter=iters, tol=0,
                                     random_state=0, **kw)
        gm.fit(X)
        return gm.timings_["iterations"]

    fit(1)  # warm: imports, kernel, persisted copy placement
    timed: list[float] = []
    while len(timed) < timed_iters:
        timed += fit(n2)[n1:]
    return float(np.median(timed))


def to_model(X, k, iters, **kw):
    """Median wall seconds of two whole fits of ``iters`` iterations (start and, with
    ``cache="memory"``, the persisted copy included)."""
    import distgmm

    walls = []
    for _ in range(2):
        t = time.perf_counter()
        distgmm.GaussianMixture(k, max_iter=iters, tol=0, random_state=0, **kw).fit(X)
        walls.append(time.perf_counter() - t)
    return float(np.median(walls))


def raw_read(path):
    import dask.array as da

    t = time.perf_counter()
    da.from_zarr(path).sum(axis=0).compute()
    return time.perf_counter() - t


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--d", type=int, default=16)
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--rows", type=int, action="append")
    p.add_argument("--n1", type=int, default=2)
    p.add_argument("--n2", type=int, default=6)
    p.add_argument("--model-iters", type=int, default=3)
    p.add_argument("--timed-iters", type=int, default=12,
                   help="iterations timed per chunking and cache (fewer: a quicker run)")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    if not 0 <= args.n1 < args.n2:
        p.error("--n1 must be at least 0 and below --n2")
    rows_list = args.rows or [125_000, 10_000, 2_000, 500]

    import dask.array as da
    import zarr
    from distributed import Client, LocalCluster

    X, means = make_data(args.n, args.d, args.k)
    results = []
    with tempfile.TemporaryDirectory() as tmp, LocalCluster(
        n_workers=2, threads_per_worker=1, dashboard_address=None, host="127.0.0.1"
    ) as cluster, Client(cluster):
        for rows in rows_list:
            path = f"{tmp}/x-{rows}.zarr"
            z = zarr.create_array(store=path, shape=X.shape, chunks=(rows, args.d), dtype="f8")
            z[:] = X
            persisted = da.from_array(X, chunks=(rows, args.d))
            r = {"rows_per_chunk": rows, "chunks": -(-args.n // rows),
                 "persisted_s": per_iteration(persisted, means, args.n1, args.n2,
                                              args.timed_iters, cache="memory"),
                 "out_of_core_s": per_iteration(da.from_zarr(path), means, args.n1, args.n2,
                                                args.timed_iters, cache="none"),
                 "raw_read_s": raw_read(path),
                 "model_memory_s": to_model(da.from_zarr(path), args.k, args.model_iters,
                                            cache="memory"),
                 "model_none_s": to_model(da.from_zarr(path), args.k, args.model_iters,
                                          cache="none")}
            results.append(r)
            print(json.dumps(r), flush=True)
    best_p = min(r["persisted_s"] for r in results)
    best_o = min(r["out_of_core_s"] for r in results)
    print("| row chunks | persisted s/iter | / best | out of core s/iter | / best "
          "| / max(persisted, raw read) | s to a model, Zarr cached | Zarr out of core |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        bound = max(r["persisted_s"], r["raw_read_s"])
        print(f"| {r['chunks']} x {r['rows_per_chunk']:,} | {r['persisted_s']:.3f} | "
              f"{r['persisted_s'] / best_p:.2f} | {r['out_of_core_s']:.3f} | "
              f"{r['out_of_core_s'] / best_o:.2f} | {r['out_of_core_s'] / bound:.2f} | "
              f"{r['model_memory_s']:.2f} | {r['model_none_s']:.2f} |")
    if args.out is not None:
        args.out.with_suffix(".json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
